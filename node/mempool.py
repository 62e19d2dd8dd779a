"""The mempool: admitted transactions waiting for a block.

* Bounded in count and in bytes, globally and per sender. A full mempool refuses with
  `MempoolFull` (429 for a sender over its quota, 503 when the pool is full); it never grows.
* Per-sender nonce order: a transaction whose nonce is ahead of the account's next nonce
  waits; the contiguous run starting at the next nonce is *ready*.
* Duplicate suppression by hash (a resubmission is answered, not stored twice).
* Admission = stateless checks (`check_raw`: decode, size, chain id, signature; pure,
  safe to run in a thread pool because PyNaCl releases the GIL) + cheap stateful checks
  (`add`: known sender, nonce not used, not too far ahead, one tx per (sender, nonce)).
* `take` hands out ready transactions in nonce order per sender, round-robin across
  senders; `on_commit` drops what a block included and re-checks the rest.

State is read through `lookup(address) -> (is_member, next_nonce)` so this module knows
nothing of the chain or the store.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ledger.errors import EncodingError, TxRejected
from ledger.tx import SignedTx, check_stateless, decode_tx

from node.errors import MempoolFull, TxAdmissionError

Lookup = Callable[[str], tuple[bool, int]]

STATUS = {  # admission error code -> HTTP status
    "bad_encoding": 400,
    "bad_signature": 401,
    "unknown_sender": 403,
    "nonce_used": 409,
    "nonce_conflict": 409,
    "tx_too_large": 413,
    "wrong_chain": 422,
    "nonce_too_far": 422,
    "expired": 422,
}


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


@dataclass(slots=True)
class _Entry:
    stx: SignedTx
    size: int
    added: float  # time.monotonic() at admission


@dataclass(slots=True)
class _Sender:
    address: str
    next_nonce: int                                     # the account's next nonce in state
    by_nonce: dict[int, _Entry] = field(default_factory=dict)
    bytes: int = 0
    ready: int = 0  # length of the contiguous run from next_nonce

    def ready_run(self) -> list[_Entry]:
        return [self.by_nonce[self.next_nonce + i] for i in range(self.ready)]

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
        clock: Callable[[], float] = time.monotonic,
    ):
        self.chain_id = chain_id
        self.lookup = lookup
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self.max_per_sender = max_per_sender
        self.max_nonce_ahead = max_nonce_ahead
        self.max_tx_bytes = max_tx_bytes
        self.clock = clock
        self._by_hash: dict[bytes, _Entry] = {}
        self._senders: dict[bytes, _Sender] = {}  # sender public key -> its queue
        self._bytes = 0
        self._ready = 0  # sum of the senders' ready runs
        self._rr = 0  # round-robin start for take()

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
        s = self._senders.get(tx.sender)
        if s is None:
            member, next_nonce = self.lookup(tx.sender_address)
            if not member:
                raise _reject(f"{tx.sender_address} is not a member of any organisation", "unknown_sender")
        else:
            next_nonce = s.next_nonce
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
        if len(self._by_hash) >= self.max_txs or self._bytes + size > self.max_bytes:
            raise MempoolFull(
                f"mempool is full ({len(self._by_hash)} transactions, {self._bytes} bytes); retry later",
                "mempool_full", 503)
        if s is None:
            s = self._senders[tx.sender] = _Sender(tx.sender_address, next_nonce)
        e = _Entry(stx, size, self.clock() if now is None else now)
        s.by_nonce[tx.nonce] = e
        s.bytes += size
        if tx.nonce == s.next_nonce + s.ready:  # extends the run (and maybe joins waiting ones)
            n = tx.nonce
            while n in s.by_nonce:
                n += 1
            self._ready += n - tx.nonce
            s.ready = n - s.next_nonce
        self._by_hash[stx.hash] = e
        self._bytes += size
        return True

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
        if e.stx.tx.nonce < s.next_nonce + s.ready:  # the run breaks here (or shrinks)
            self._ready += s.recount()
        if not s.by_nonce:
            self._ready -= s.ready
            del self._senders[e.stx.tx.sender]

    def on_commit(self, committed: Iterable[SignedTx], next_height: int | None = None) -> list[SignedTx]:
        """Drop the block's transactions, then re-check every sender against state: drop
        txs whose nonce is now used, senders no longer members, and txs expired before
        `next_height`. Returns the dropped transactions that were not in the block."""
        for stx in committed:
            self.remove(stx.hash)
        dropped: list[SignedTx] = []
        for key in list(self._senders):
            s = self._senders[key]
            member, next_nonce = self.lookup(s.address)
            s.next_nonce = next_nonce
            self._ready += s.recount()
            for nonce, e in sorted(s.by_nonce.items()):
                tx = e.stx.tx
                stale = nonce < next_nonce or not member
                expired = next_height is not None and tx.expiry and next_height > tx.expiry
                if stale or expired:
                    dropped.append(e.stx)
                    self.remove(e.stx.hash)
        return dropped
