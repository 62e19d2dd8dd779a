"""The mempool: admitted transactions waiting for a block.

* Bounded in count and in bytes, globally, per sender and per organisation (a byte
  share of the pool each). A full mempool refuses with `MempoolFull` (429 for a sender or
  an organisation over its share, 503 when the pool is full); it never grows.
* When the pool is full, a transaction that would be ready evicts *gapped* ones (waiting
  for an earlier nonce that never came), oldest first; ready transactions are never
  evicted. Gapped transactions also expire after `gapped_ttl_s`. Together these stop one
  organisation from parking nonce-gapped transactions until nobody else gets in.
* Per-sender nonce order: a transaction whose nonce is ahead of the account's next nonce
  waits; the contiguous run starting at the next nonce is *ready*.
* Duplicate suppression by hash (a resubmission is answered, not stored twice).
* Admission = stateless checks (`check_raw`: decode, size, chain id, signature; pure,
  safe to run in a thread pool because PyNaCl releases the GIL) + cheap stateful checks
  (`add`: known type, payload size for its type, known sender with a role that may send
  it, nonce not used, not too far ahead, one tx per (sender, nonce)). Execution re-checks
  everything; these only keep out what could never succeed.
* `take` hands out ready transactions in nonce order per sender, round-robin across
  senders; `on_commit` drops what a block included and re-checks the rest.

State is read through `lookup(address) -> (member, next_nonce)` so this module knows
nothing of the chain or the store. `member` is the member record (``{org, role, key}``,
as `ledger.accounts.member` returns it) or None; a plain True/False is accepted too and
then skips the role check and the organisation share.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ledger.errors import EncodingError, TxRejected
from ledger.tx import SignedTx, check_stateless, decode_tx
from ledger.txtypes import TX_TYPES

from node.errors import MempoolFull, TxAdmissionError

Lookup = Callable[[str], tuple[object, int]]  # (member record | None | bool, next nonce)

# Largest encoded payload admitted per transaction type. Each is well above the largest
# payload that type can validly carry (4-byte characters in every text field; a test
# builds those), so they only refuse what execution would refuse anyway, before it
# takes mempool space. Execution does not use them: a chain's history replays unchanged.
DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024
MAX_PAYLOAD_BYTES: dict[str, int] = {
    "transfer": 2 * 1024,                 # to, amount, memo of <= 256 characters
    "listing_create": 16 * 1024,          # 32 features and three texts of <= 64 characters
    "listing_update": 16 * 1024,
    "lease_open": 24 * 1024,              # two lists of 32 texts
    "lease_accept": 8 * 1024,             # sealed access <= 4096 bytes
}

STATUS = {  # admission error code -> HTTP status
    "bad_encoding": 400,
    "bad_signature": 401,
    "unknown_sender": 403,
    "unauthorized": 403,
    "payload_too_large": 413,
    "unknown_type": 422,
    "nonce_used": 409,
    "nonce_conflict": 409,
    "tx_too_large": 413,
    "wrong_chain": 422,
    "nonce_too_far": 422,
    "expired": 422,
}


def _payload_size_bound(stx: SignedTx) -> int:
    """The encoded payload's size, from the raw length minus the smallest possible rest of
    the envelope (over by at most ~20 bytes of int/str headers): no re-encoding needed."""
    tx = stx.tx
    rest = (1 + 1                              # the two array headers
            + 1 + len(tx.chain_id.encode())    # str header (at least 1 byte) + chain id
            + 2 + 32                           # sender: bin8 header + key
            + 1 + 1                            # nonce, expiry: at least 1 byte each
            + 1 + len(tx.type.encode())        # type
            + 2 + 64)                          # signature: bin8 header + signature
    return len(stx.raw) - rest


def _reject(message: str, code: str) -> TxAdmissionError:
    return TxAdmissionError(message, code, STATUS.get(code, 422))


def check_raw(raw: bytes, chain_id: str, max_tx_bytes: int) -> SignedTx:
    """Stateless admission: size, strict decoding, chain id, signature. Raises TxAdmissionError."""
    if len(raw) > max_tx_bytes:
        raise _reject(f"transaction is {len(raw)} bytes, above the limit of {max_tx_bytes}", "tx_too_large")
    try:
        stx = decode_tx(raw, max_tx_bytes)
    except EncodingError as exc:
        raise _reject(f"not a canonical signed transaction: {exc.message}", "bad_encoding") from None
    try:
        check_stateless(stx, chain_id)
    except TxRejected as exc:
        raise _reject(exc.message, exc.code) from None
    return stx


def check_raws(raws: list[bytes], chain_id: str, max_tx_bytes: int) -> list:
    """`check_raw` for a batch (run in a worker thread): each item its SignedTx, or the
    TxAdmissionError that refused it, so one bad transaction does not sink the others."""
    out: list = []
    for raw in raws:
        try:
            out.append(check_raw(raw, chain_id, max_tx_bytes))
        except TxAdmissionError as exc:
            out.append(exc)
    return out


@dataclass(slots=True)
class _Entry:
    stx: SignedTx
    size: int
    added: float  # time.monotonic() at admission


@dataclass(slots=True)
class _Sender:
    address: str
    next_nonce: int                                     # the account's next nonce in state
    org: str | None = None                              # its organisation (None: not known)
    member: object = True                               # what lookup said at admission / last commit
    by_nonce: dict[int, _Entry] = field(default_factory=dict)
    bytes: int = 0
    ready: int = 0  # length of the contiguous run from next_nonce

    def ready_run(self) -> list[_Entry]:
        return [self.by_nonce[self.next_nonce + i] for i in range(self.ready)]

    def gapped(self) -> list[_Entry]:
        """Entries past the ready run: waiting for a nonce nobody has sent yet."""
        end = self.next_nonce + self.ready
        return [e for n, e in self.by_nonce.items() if n >= end]

    def recount(self) -> int:
        """Recompute `ready`; returns the change."""
        old, n = self.ready, self.next_nonce
        while n in self.by_nonce:
            n += 1
        self.ready = n - self.next_nonce
        return self.ready - old


class Mempool:
    def __init__(
        self,
        chain_id: str,
        lookup: Lookup,
        *,
        max_txs: int = 20_000,
        max_bytes: int = 64 * 1024 * 1024,
        max_per_sender: int = 1_000,
        max_nonce_ahead: int = 1_000,
        max_tx_bytes: int = 64 * 1024,
        max_sender_bytes: int | None = None,
        max_org_bytes: int | None = None,
        gapped_ttl_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.chain_id = chain_id
        self.lookup = lookup
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self.max_per_sender = max_per_sender
        self.max_nonce_ahead = max_nonce_ahead
        self.max_tx_bytes = max_tx_bytes
        self.max_sender_bytes = max_sender_bytes  # None: 1/16 of max_bytes (sender_share_bytes)
        self.max_org_bytes = max_org_bytes        # None: 1/4 of max_bytes (org_share_bytes)
        self.gapped_ttl_s = gapped_ttl_s
        self.clock = clock
        self._by_hash: dict[bytes, _Entry] = {}
        self._senders: dict[bytes, _Sender] = {}  # sender public key -> its queue
        self._org_bytes: dict[str, int] = {}
        self._bytes = 0
        self._ready = 0  # sum of the senders' ready runs
        self._rr = 0  # round-robin start for take()
        self.evicted = 0  # gapped transactions pushed out by ready ones (counters for metrics)
        self.expired = 0  # gapped transactions dropped after gapped_ttl_s

    # reads --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._by_hash)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._by_hash

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, tx_hash: bytes) -> SignedTx | None:
        e = self._by_hash.get(tx_hash)
        return None if e is None else e.stx

    def added_at(self, tx_hash: bytes) -> float | None:
        e = self._by_hash.get(tx_hash)
        return None if e is None else e.added

    def is_ready(self, tx_hash: bytes) -> bool:
        e = self._by_hash.get(tx_hash)
        if e is None:
            return False
        s = self._senders[e.stx.tx.sender]
        return e.stx.tx.nonce < s.next_nonce + s.ready

    def verified_hashes(self) -> frozenset[bytes]:
        """Hashes whose signatures admission already checked (block validation skips them)."""
        return frozenset(self._by_hash)

    def ready_count(self) -> int:
        return self._ready

    def oldest_ready(self) -> float | None:
        """Admission time of the oldest ready transaction (drives the block interval)."""
        times = [e.added for s in self._senders.values() for e in s.ready_run()]
        return min(times) if times else None

    def oldest_proposable(self, max_bytes: int, next_height: int | None = None) -> bytes | None:
        """Hash of the longest-held transaction that is first in its sender's ready run, at
        most `max_bytes` and not expired at `next_height`; None if there is none. Any
        primary that holds it can put it in the next block, whatever else of that sender it
        lacks: the runner reports it so the consensus core can tell a censoring primary."""
        best: _Entry | None = None
        for s in self._senders.values():
            if not s.ready:
                continue
            e = s.by_nonce[s.next_nonce]
            expiry = e.stx.tx.expiry
            if e.size > max_bytes or (next_height is not None and expiry and next_height > expiry):
                continue
            if best is None or e.added < best.added:
                best = e
        return None if best is None else best.stx.hash

    def pending_nonce(self, sender: bytes) -> int | None:
        """The next nonce after this sender's ready run, or None if it has nothing pending."""
        s = self._senders.get(sender)
        if s is None:
            return None
        return s.next_nonce + s.ready

    def pending_run(self, sender: bytes) -> list[SignedTx]:
        """This sender's ready run in nonce order: what the next blocks would execute (dry runs)."""
        s = self._senders.get(sender)
        return [] if s is None else [e.stx for e in s.ready_run()]

    def stats(self) -> dict:
        return {"txs": len(self._by_hash), "bytes": self._bytes, "ready": self.ready_count(),
                "senders": len(self._senders)}

    @property
    def sender_share_bytes(self) -> int:
        """Bytes one sender may have pending: never less than one transaction of the maximum size."""
        share = self.max_sender_bytes if self.max_sender_bytes is not None else self.max_bytes // 16
        return max(share, self.max_tx_bytes)

    @property
    def org_share_bytes(self) -> int:
        """Bytes all members of one organisation together may have pending."""
        share = self.max_org_bytes if self.max_org_bytes is not None else self.max_bytes // 4
        return max(share, self.max_tx_bytes)

    def org_bytes(self) -> dict[str, int]:
        """Pending bytes per organisation (of the senders whose organisation is known)."""
        return dict(self._org_bytes)

    # admission ------------------------------------------------------------------------
    def check_raw(self, raw: bytes) -> SignedTx:
        return check_raw(raw, self.chain_id, self.max_tx_bytes)

    def add(self, stx: SignedTx, *, now: float | None = None, next_height: int | None = None) -> bool:
        """Stateful admission of a transaction that passed `check_raw`. With `next_height`,
        a transaction already expired for that height is refused (it could never be included).

        Returns True if added, False if it was already pending (duplicate). Raises
        TxAdmissionError or MempoolFull and then changes nothing."""
        if stx.hash in self._by_hash:
            return False
        tx = stx.tx
        if tx.chain_id != self.chain_id:  # check_raw does this; cheap to repeat for direct callers
            raise _reject(f"transaction is for chain {tx.chain_id!r}, this node runs {self.chain_id!r}", "wrong_chain")
        if next_height is not None and tx.expiry and next_height > tx.expiry:
            raise _reject(f"transaction expired at height {tx.expiry}; the next block is {next_height}", "expired")
        size = len(stx.raw)
        if size > self.max_tx_bytes:
            raise _reject(f"transaction is {size} bytes, above the limit of {self.max_tx_bytes}", "tx_too_large")
        kind = TX_TYPES.get(tx.type)
        if kind is None:
            raise _reject(f"unknown transaction type {tx.type!r}", "unknown_type")
        cap = MAX_PAYLOAD_BYTES.get(tx.type, DEFAULT_MAX_PAYLOAD_BYTES)
        payload_size = _payload_size_bound(stx)
        if payload_size > cap:
            raise _reject(f"{tx.type} payload is {payload_size} bytes; a {tx.type} payload is at most {cap}",
                          "payload_too_large")
        s = self._senders.get(tx.sender)
        if s is None:
            member, next_nonce = self.lookup(tx.sender_address)
        else:  # as of the last commit (on_commit refreshes it): admission stays cheap
            member, next_nonce = s.member, s.next_nonce
        if not member:
            raise _reject(f"{tx.sender_address} is not a member of any organisation", "unknown_sender")
        record = member if isinstance(member, dict) else None
        if record is not None and kind.roles and record.get("role") not in kind.roles:
            raise _reject(f"{tx.type} needs role {' or '.join(sorted(kind.roles))}; "
                          f"{tx.sender_address} is {record.get('role')}", "unauthorized")
        org = record.get("org") if record is not None else None
        if tx.nonce < next_nonce:
            raise _reject(f"nonce {tx.nonce} is already used; the account's next nonce is {next_nonce}", "nonce_used")
        if tx.nonce > next_nonce + self.max_nonce_ahead:
            raise _reject(
                f"nonce {tx.nonce} is more than {self.max_nonce_ahead} ahead of the account's next nonce {next_nonce}",
                "nonce_too_far",
            )
        if s is not None and tx.nonce in s.by_nonce:
            other = s.by_nonce[tx.nonce].stx.hash.hex()
            raise _reject(f"nonce {tx.nonce} is taken by pending transaction {other}", "nonce_conflict")
        if s is not None and len(s.by_nonce) >= self.max_per_sender:
            raise MempoolFull(
                f"{tx.sender_address} has {len(s.by_nonce)} pending transactions (quota {self.max_per_sender}); "
                "retry after some commit", "sender_quota", 429)
        if s is not None and s.bytes + size > self.sender_share_bytes:
            raise MempoolFull(
                f"{tx.sender_address} has {s.bytes} bytes pending (share {self.sender_share_bytes}); "
                "retry after some commit", "sender_quota", 429)
        if org is not None and self._org_bytes.get(org, 0) + size > self.org_share_bytes:
            raise MempoolFull(
                f"organisation {org} has {self._org_bytes.get(org, 0)} bytes pending (share "
                f"{self.org_share_bytes}); retry after some commit", "org_quota", 429)
        clock_now = self.clock() if now is None else now
        if not self._has_room(size):
            self.expire_gapped(clock_now)
        if not self._has_room(size):
            # only a transaction that would be ready may push out waiting ones
            will_be_ready = tx.nonce == (next_nonce if s is None else s.next_nonce + s.ready)
            if not (will_be_ready and self._evict_gapped_for(size, tx.sender)):
                raise MempoolFull(
                    f"mempool is full ({len(self._by_hash)} transactions, {self._bytes} bytes, "
                    f"{self._ready} ready); retry later", "mempool_full", 503)
        if s is None:
            s = self._senders[tx.sender] = _Sender(tx.sender_address, next_nonce, org, member)
        e = _Entry(stx, size, clock_now)
        s.by_nonce[tx.nonce] = e
        s.bytes += size
        if s.org is not None:
            self._org_bytes[s.org] = self._org_bytes.get(s.org, 0) + size
        if tx.nonce == s.next_nonce + s.ready:  # extends the run (and maybe joins waiting ones)
            n = tx.nonce
            while n in s.by_nonce:
                n += 1
            self._ready += n - tx.nonce
            s.ready = n - s.next_nonce
        self._by_hash[stx.hash] = e
        self._bytes += size
        return True

    def _has_room(self, size: int) -> bool:
        return len(self._by_hash) < self.max_txs and self._bytes + size <= self.max_bytes

    def _evict_gapped_for(self, size: int, newcomer: bytes) -> bool:
        """Make room for `size` bytes by removing gapped transactions of other senders,
        oldest first. Removes nothing and returns False when that cannot make room."""
        if len(self._by_hash) == self._ready:  # nothing is gapped: skip the scan
            return False
        victims = sorted((e for key, snd in self._senders.items() if key != newcomer for e in snd.gapped()),
                         key=lambda e: e.added)
        # Free 1/64 of the pool more than this one needs while at it: a stream of ready
        # newcomers then pays for this scan once per 1/64 of the pool, not once each.
        spare_txs, spare_bytes = self.max_txs // 64, self.max_bytes // 64
        count, used, chosen = len(self._by_hash), self._bytes, 0
        while chosen < len(victims) and not (count < self.max_txs - spare_txs
                                             and used + size <= self.max_bytes - spare_bytes):
            count -= 1
            used -= victims[chosen].size
            chosen += 1
        if not (count < self.max_txs and used + size <= self.max_bytes):
            return False
        for e in victims[:chosen]:
            self.remove(e.stx.hash)
        self.evicted += chosen
        return True

    def expire_gapped(self, now: float | None = None) -> list[SignedTx]:
        """Drop gapped transactions older than `gapped_ttl_s`: the nonce they wait for has
        not come in that time, so it most likely never will. Returns what was dropped."""
        if len(self._by_hash) == self._ready:
            return []
        cutoff = (self.clock() if now is None else now) - self.gapped_ttl_s
        stale = [e.stx for snd in self._senders.values() for e in snd.gapped() if e.added < cutoff]
        for stx in stale:
            self.remove(stx.hash)
        self.expired += len(stale)
        return stale

    # proposing --------------------------------------------------------------------------
    def take(self, max_txs: int, max_bytes: int | None = None) -> list[SignedTx]:
        """Ready transactions for a block: nonce order per sender, one sender after another
        round-robin (the start rotates between calls), within both limits. Nothing is removed."""
        runs = [s.ready_run() for s in self._senders.values() if s.ready]
        if not runs:
            return []
        start = self._rr % len(runs)
        runs = runs[start:] + runs[:start]
        self._rr += 1
        out: list[SignedTx] = []
        used = 0
        pos = [0] * len(runs)
        progressed = True
        while progressed and len(out) < max_txs:
            progressed = False
            for i, run in enumerate(runs):
                if len(out) >= max_txs or pos[i] >= len(run):
                    continue
                e = run[pos[i]]
                if max_bytes is not None and used + e.size > max_bytes:
                    pos[i] = len(run)  # this sender's later txs depend on this one: skip the rest
                    continue
                out.append(e.stx)
                used += e.size
                pos[i] += 1
                progressed = True
        return out

    # after a commit ----------------------------------------------------------------------
    def remove(self, tx_hash: bytes) -> None:
        e = self._by_hash.pop(tx_hash, None)
        if e is None:
            return
        self._bytes -= e.size
        s = self._senders[e.stx.tx.sender]
        del s.by_nonce[e.stx.tx.nonce]
        s.bytes -= e.size
        if s.org is not None:
            self._org_bytes[s.org] -= e.size
            if not self._org_bytes[s.org]:
                del self._org_bytes[s.org]
        if e.stx.tx.nonce < s.next_nonce + s.ready:  # the run breaks here (or shrinks)
            self._ready += s.recount()
        if not s.by_nonce:
            self._ready -= s.ready
            del self._senders[e.stx.tx.sender]

    def on_commit(self, committed: Iterable[SignedTx], next_height: int | None = None) -> list[SignedTx]:
        """Drop the block's transactions, then re-check every sender against state: drop
        txs whose nonce is now used, senders no longer members, and txs expired before
        `next_height`, and gapped txs older than `gapped_ttl_s`. Returns the dropped
        transactions that were not in the block."""
        for stx in committed:
            self.remove(stx.hash)
        dropped: list[SignedTx] = []
        for key in list(self._senders):
            s = self._senders[key]
            member, next_nonce = self.lookup(s.address)
            org = member.get("org") if isinstance(member, dict) else None
            if org != s.org:  # moved organisation (governance): move its bytes too
                self._move_org(s, org)
            s.member = member
            s.next_nonce = next_nonce
            self._ready += s.recount()
            for nonce, e in sorted(s.by_nonce.items()):
                tx = e.stx.tx
                stale = nonce < next_nonce or not member
                expired = next_height is not None and tx.expiry and next_height > tx.expiry
                if stale or expired:
                    dropped.append(e.stx)
                    self.remove(e.stx.hash)
        dropped.extend(self.expire_gapped())
        return dropped

    def _move_org(self, s: _Sender, org: str | None) -> None:
        if s.org is not None:
            self._org_bytes[s.org] -= s.bytes
            if not self._org_bytes[s.org]:
                del self._org_bytes[s.org]
        s.org = org
        if org is not None and s.bytes:
            self._org_bytes[org] = self._org_bytes.get(org, 0) + s.bytes
