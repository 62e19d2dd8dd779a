"""Replay a chain from its genesis file and verify every step.

`replay(source, genesis_doc, genesis_hash)` rebuilds the chain in a fresh in-memory store (audit.memstore.ReplayStore, a MemoryStore)
with the ledger's own code and returns a `Report`. Per block, in this order:

1. the block exists and decodes strictly, and is stored under its own height;
2. `Chain.validate_block`: chain id, height, parent link, time, an empty block only when
   due (ledger/heartbeat.py), proposer, validator-set
   hash, the parent's certificate carried in the block (against the set that decided
   the parent), the transaction limit, the transactions root, every transaction's
   signature, nonce and expiry, re-execution, the results root and the state root;
3. the block's stored certificate (``c/<height>``) against the validator set in force at
   that height (`accounts.validators` of the state after the previous block, so governance
   changes are honoured exactly as the chain applies them);
4. credit conservation after the block: sum of ``bal/`` + ``escrow_total`` == ``supply``.

Then, at the end: the source's head record against the replayed head (also the head
validators), and, when the source is a node's store, every key of the node's store
(state, blocks, certificates, indexes, receipts) against the store replay built.

"expected" in a failure is what replay derived from the genesis file; "got" is what the
source holds.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ledger.block import Block, Certificate, next_validators_hash, quorum, validator_set_hash
from ledger.chain import META_GENESIS, META_HEAD, META_HEAD_VALIDATORS, Chain
from ledger.encoding import decode
from ledger.errors import BlockInvalid, EncodingError, LedgerError
from ledger.execution import execute_block
from ledger.merkle import merkle_root
from ledger.statetree import prove
from ledger.store.base import (
    PREFIX_BLOCK,
    PREFIX_CERT,
    PREFIX_HASH,
    PREFIX_RECEIPT,
    PREFIX_STATE,
    PREFIX_TX,
)
from ledger.tx import decode_tx

from audit.memstore import ReplayStore
from audit.sigcheck import SignatureChecker
from audit.source import BlockSource

MAX_TX_BYTES_BOUND = 1024 * 1024  # the largest max_tx_bytes governance can set
COMPARED_PREFIXES = (PREFIX_STATE, PREFIX_BLOCK, PREFIX_CERT, PREFIX_HASH, PREFIX_TX, PREFIX_RECEIPT)
COMPARED_META = (META_GENESIS, META_HEAD, META_HEAD_VALIDATORS)


def _hex(value):
    return value.hex() if isinstance(value, (bytes, bytearray)) else value


@dataclass
class Failure:
    height: int
    code: str
    message: str
    expected: Any = None
    got: Any = None

    def to_json(self) -> dict:
        return {"height": self.height, "code": self.code, "message": self.message,
                "expected": _jsonable(self.expected), "got": _jsonable(self.got)}


def _jsonable(value):
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class AuditFailure(Exception):
    def __init__(self, failure: Failure):
        super().__init__(f"height {failure.height}: {failure.code}: {failure.message}")
        self.failure = failure


def _fail(height: int, code: str, message: str, expected=None, got=None):
    raise AuditFailure(Failure(height, code, message, expected, got))


@dataclass
class ValidatorChange:
    """A validator set installed by block `height - 1`, deciding from `height` on.

    `evidence` lets a verifier who trusts the old set learn the new one: the header and
    certificate of the installing block, and the ``validators`` state entry after it
    with its state-tree inclusion proof against that header's state root.
    """

    height: int
    keys: list[bytes]
    evidence: dict

    def to_json(self) -> dict:
        return {"height": self.height, "validators": [k.hex() for k in self.keys]}


@dataclass
class Report:
    ok: bool
    source: str
    chain_id: str
    genesis_hash: bytes
    head_height: int = 0
    head_hash: bytes = b""
    state_root: bytes = b""
    blocks: int = 0
    transactions: int = 0
    validators_seen: list[bytes] = field(default_factory=list)
    validator_changes: list[ValidatorChange] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 1
    pool: str = "inline"
    failure: Failure | None = None

    @property
    def tx_per_s(self) -> float:
        return self.transactions / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict:
        return {
            "ok": self.ok,
            "source": self.source,
            "chain_id": self.chain_id,
            "genesis_hash": self.genesis_hash.hex(),
            "verified_height": self.head_height,
            "head_hash": self.head_hash.hex(),
            "state_root": self.state_root.hex(),
            "blocks": self.blocks,
            "transactions": self.transactions,
            "validators_seen": [k.hex() for k in self.validators_seen],
            "validator_changes": [c.to_json() for c in self.validator_changes],
            "seconds": round(self.seconds, 3),
            "tx_per_s": round(self.tx_per_s, 1),
            "workers": self.workers,
            "pool": self.pool,
            "failure": None if self.failure is None else self.failure.to_json(),
        }

    def text(self) -> str:
        lines = [
            f"source:        {self.source}",
            f"chain:         {self.chain_id} (genesis {self.genesis_hash.hex()})",
            f"blocks:        {self.blocks} verified (head {self.head_height} {self.head_hash.hex()[:16]})",
            f"transactions:  {self.transactions}",
            f"validators:    {len(self.validators_seen)} seen, {len(self.validator_changes)} set change(s)"
            + "".join(f"\n               from height {c.height}: {len(c.keys)} validators" for c in self.validator_changes),
            f"time:          {self.seconds:.2f} s, {self.tx_per_s:,.0f} tx/s ({self.pool} pool, {self.workers} worker{'s' if self.workers != 1 else ''})",
        ]
        if self.failure is None:
            lines.append(f"result:        OK, state root {self.state_root.hex()}")
        else:
            f = self.failure
            lines.append(f"result:        FAILED at height {f.height}: {f.code}")
            lines.append(f"               {f.message}")
            if f.expected is not None or f.got is not None:
                lines.append(f"  expected:    {_jsonable(f.expected)}")
                lines.append(f"  got:         {_jsonable(f.got)}")
        return "\n".join(lines)


# --- certificates -------------------------------------------------------------------------


def check_certificate(cert: Certificate, *, chain_id: str, height: int, block_hash: bytes,
                      validators: list[bytes], what: str, at: int) -> None:
    """`Certificate.verify`, preceded by cheap checks that name the precise cause.

    `at` is the height reported on failure (the block holding or carrying the certificate).
    """
    if cert.height != height or cert.block_hash != block_hash:
        _fail(at, "cert_wrong_block", f"{what} certifies another block",
              {"height": height, "block_hash": block_hash}, {"height": cert.height, "block_hash": cert.block_hash})
    allowed = set(validators)
    signers = [k for k, _ in cert.signatures]
    for key in signers:
        if key not in allowed:
            _fail(at, "cert_unknown_signer",
                  f"{what} is signed by {key.hex()}, not a validator at height {height}",
                  [k.hex() for k in validators], key.hex())
    if len(set(signers)) != len(signers):
        _fail(at, "cert_duplicate_signer", f"{what} names a signer twice")
    need = quorum(len(validators))
    if len(signers) < need:
        _fail(at, "cert_no_quorum",
              f"{what} has {len(signers)} signatures; {need} of {len(validators)} validators are needed",
              need, len(signers))
    try:
        cert.verify(chain_id, validators)
    except BlockInvalid as exc:
        code = "cert_bad_signature" if "bad signature" in exc.message else exc.code
        _fail(at, code, f"{what}: {exc.message}")


def _decode_cert(raw: bytes, at: int, what: str) -> Certificate:
    try:
        return Certificate.from_wire(decode(raw))
    except EncodingError as exc:
        _fail(at, "bad_certificate_encoding", f"{what} does not decode: {exc}")


# --- explaining validate_block's verdicts ---------------------------------------------------


def _explain(chain: Chain, block: Block, exc: BlockInvalid, verified) -> tuple[Any, Any]:
    hd, head, code = block.header, chain.head, exc.code
    if code == "wrong_chain":
        return chain.chain_id, hd.chain_id
    if code == "wrong_height":
        return head.height + 1, hd.height
    if code == "bad_parent":
        return head.block_hash, hd.parent_hash
    if code == "bad_time":
        return f"> {head.time_ms}", hd.time_ms
    if code == "empty_block_not_due":  # ledger/heartbeat.py: due from this time on, or never
        due = chain.next_heartbeat_ms()
        return ("transactions (no empty block is ever due here)" if due is None
                else f"transactions, or time >= {due}"), f"no transactions at time {hd.time_ms}"
    if code == "bad_proposer":
        return [k.hex() for k in chain.validator_keys], hd.proposer
    if code == "bad_validator_set":
        return validator_set_hash(chain.validator_keys), hd.validator_set_hash
    if code == "bad_next_validators":
        max_tx = chain.params.get("max_tx_bytes", 64 * 1024)
        try:
            result = execute_block(chain.store, chain.block_context(hd.height, hd.time_ms),
                                   [decode_tx(r, max_tx) for r in block.txs], head.state_root, verified=verified)
        except LedgerError:  # pragma: no cover - validate_block just ran the same
            return None, None
        return next_validators_hash([v["key"] for v in result.validators]), hd.next_validators_hash
    if code == "too_many_txs":
        return chain.params.get("max_block_txs", 2000), len(block.txs)
    if code == "bad_txs_root":
        return merkle_root(list(block.txs)), hd.txs_root
    if code in ("bad_results_root", "bad_state_root"):
        max_tx = chain.params.get("max_tx_bytes", 64 * 1024)
        try:
            result = execute_block(chain.store, chain.block_context(hd.height, hd.time_ms),
                                   [decode_tx(r, max_tx) for r in block.txs], head.state_root, verified=verified)
        except LedgerError:  # pragma: no cover - validate_block just ran the same
            return None, None
        if code == "bad_results_root":
            return result.results_root, hd.results_root
        return result.state_root, hd.state_root
    if code == "bad_last_cert":
        cert = block.last_cert
        if cert is None:
            return f"certificate of block {hd.height - 1}", None
        if cert.hash != hd.last_cert_hash:
            return hd.last_cert_hash, cert.hash
        return {"height": hd.height - 1, "block_hash": hd.parent_hash}, {"height": cert.height, "block_hash": cert.block_hash}
    return None, None


# --- the replay ---------------------------------------------------------------------------


@dataclass
class _Item:
    height: int
    raw: bytes | None
    cert_raw: bytes | None
    block: Block | None
    error: str | None
    sigs: Any


def _pipeline(source: BlockSource, head: int, checker: SignatureChecker, lookahead_txs: int) -> Iterator[_Item]:
    """Read and decode blocks ahead of validation and start their signature checks."""
    window: deque[_Item] = deque()
    inflight = 0
    for h, raw, cert_raw in source.fetch(1, head + 1):
        block, error, sigs = None, None, None
        if raw is not None:
            try:
                block = Block.decode(raw)
            except EncodingError as exc:
                error = str(exc)
        if block is not None:
            sigs = checker.submit(block.txs)
            inflight += len(block.txs)
        window.append(_Item(h, raw, cert_raw, block, error, sigs))
        while window and (inflight > lookahead_txs or len(window) > 64):
            item = window.popleft()
            inflight -= len(item.block.txs) if item.block else 0
            yield item
    while window:
        yield window.popleft()


def _int_value(raw: bytes | None) -> int:
    return 0 if raw is None else decode(raw)


class Replayer:
    """One replay; `run()` returns the Report. Split out so tests can stop at a height."""

    def __init__(self, source: BlockSource, genesis_doc: dict, genesis_hash: bytes, *,
                 workers: int | None = None, pool: str = "process",
                 progress: Callable[[int, int], None] | None = None, upto: int | None = None,
                 lookahead_txs: int | None = None, compare_store: bool = True, nice: int = 0):
        self.source = source
        self.doc = genesis_doc
        self.genesis_hash = genesis_hash
        self.workers, self.pool = workers, pool
        self.progress = progress
        self.upto = upto
        self.lookahead_txs = lookahead_txs
        self.compare_store = compare_store
        self.nice = nice
        # the tree is rebuilt from genesis in replay's own store; one version is all it needs
        self.chain = Chain(ReplayStore(), genesis_doc, genesis_hash, state_versions_kept=1)
        self.report = Report(False, source.description, self.chain.chain_id, genesis_hash)
        self._seen: dict[bytes, None] = {}
        self._balances = 0

    # helpers --------------------------------------------------------------------------
    def _see(self, keys: list[bytes]) -> None:
        for k in keys:
            self._seen.setdefault(k, None)

    def _conservation(self, height: int, writes: dict[bytes, bytes | None] | None) -> None:
        store = self.chain.store
        if writes is None:
            self._balances = sum(decode(v) for _, v in store.iterate(PREFIX_STATE + b"bal/"))
            escrow = _int_value(store.get(PREFIX_STATE + b"escrow_total"))
            supply = _int_value(store.get(PREFIX_STATE + b"supply"))
        else:
            for key, value in writes.items():
                if key.startswith(b"bal/"):
                    self._balances += _int_value(value) - _int_value(store.get(PREFIX_STATE + key))
            get = lambda k: writes[k] if k in writes else store.get(PREFIX_STATE + k)  # noqa: E731
            escrow = _int_value(get(b"escrow_total"))
            supply = _int_value(get(b"supply"))
        if self._balances + escrow != supply:
            _fail(height, "conservation",
                  f"after block {height}: balances {self._balances} + escrow {escrow} != supply {supply}",
                  supply, self._balances + escrow)

    # the steps --------------------------------------------------------------------------
    def _block(self, item: _Item) -> None:
        chain, h = self.chain, item.height
        if item.raw is None:
            _fail(h, "missing_block", f"the source has no block at height {h} (head is {self.report.head_height})")
        if item.block is None:
            _fail(h, "bad_block_encoding", f"block {h} does not decode: {item.error}")
        block = item.block
        if block.height != h:
            _fail(h, "wrong_height", f"the block stored at height {h} says it is block {block.height}", h, block.height)
        verified = item.sigs.result()
        deciding = chain.validator_keys
        try:
            result = chain.validate_block(block, verified=verified)
        except BlockInvalid as exc:
            if exc.code == "bad_certificate" and block.last_cert is not None:
                check_certificate(block.last_cert, chain_id=chain.chain_id, height=h - 1,
                                  block_hash=chain.head.block_hash, validators=chain.head_validator_keys,
                                  what=f"the certificate of block {h - 1} carried in block {h}", at=h)
            expected, got = _explain(chain, block, exc, verified)
            _fail(h, exc.code, exc.message, expected, got)
        except LedgerError as exc:  # e.g. a state value that no longer decodes
            _fail(h, exc.code, f"block {h}: {exc.message}")
        if item.cert_raw is None:
            _fail(h, "missing_certificate", f"the source has no certificate for block {h}")
        cert = _decode_cert(item.cert_raw, h, f"the stored certificate of block {h}")
        check_certificate(cert, chain_id=chain.chain_id, height=h, block_hash=block.hash, validators=deciding,
                          what=f"the stored certificate of block {h}", at=h)
        self._conservation(h, result.writes)
        chain.commit_block(block, cert, result)
        self._see([k for k, _ in cert.signatures])
        if b"validators" in result.writes:
            keys = chain.validator_keys
            value, proof = prove(chain.store, b"validators", h)
            self._see(keys)
            self.report.validator_changes.append(ValidatorChange(h + 1, keys, {
                "header": block.header.encode(),
                "certificate": cert.encode(),
                "validators_value": value,
                "state_proof": proof.encode(),
            }))
        self.report.blocks += 1
        self.report.transactions += len(block.txs)

    def _head(self, head: int) -> None:
        meta = self.source.head_meta()
        chain = self.chain
        if not meta:
            return
        mine = {"height": chain.head.height, "block_hash": chain.head.block_hash,
                "state_root": chain.head.state_root, "time_ms": chain.head.time_ms}
        for name, value in mine.items():
            if name in meta and meta[name] != value:
                _fail(head, "head_mismatch", f"the source's head record: {name} differs from the replayed chain",
                      value, meta[name])
        if "validators" in meta and meta["validators"] != chain.head_validator_keys:
            _fail(head, "head_mismatch", "the source's head record: the validators of the head block differ",
                  [k.hex() for k in chain.head_validator_keys], _jsonable(meta["validators"]))

    def _compare_store(self, head: int) -> None:
        """Every key of the node's store that replay also produces, byte for byte."""
        theirs, mine = self.source.store, self.chain.store
        if theirs is None or not self.compare_store:
            return
        if theirs.get(PREFIX_BLOCK + (head + 1).to_bytes(8, "big")) is not None:
            _fail(head + 1, "beyond_head", f"the store holds a block at height {head + 1}, above its head record {head}")
        diffs: list[Failure] = []
        for prefix in COMPARED_PREFIXES:
            for key, a, b in _merge(mine.iterate(prefix), theirs.iterate(prefix)):
                diffs.append(_store_diff(prefix, key, a, b, head))
        for key in COMPARED_META:
            if mine.get(key) != theirs.get(key):
                diffs.append(Failure(head, "meta_mismatch", f"meta record {key!r} differs", mine.get(key), theirs.get(key)))
        if diffs:
            first = min(diffs, key=lambda d: d.height)
            if len(diffs) > 1:
                first.message += f" ({len(diffs)} differing keys in all)"
            raise AuditFailure(first)

    def run(self) -> Report:
        report, chain = self.report, self.chain
        start = time.perf_counter()
        checker = None
        try:
            theirs = self.source.genesis_hash()
            if theirs is not None and theirs != self.genesis_hash:
                _fail(0, "wrong_genesis", f"{self.source.description} runs a chain from another genesis",
                      self.genesis_hash, theirs)
            head = self.source.head_height()
            if self.upto is not None:
                head = min(head, self.upto)
            report.head_height = head
            self._see(chain.validator_keys)
            self._conservation(0, None)
            checker = SignatureChecker(self.workers, self.pool, MAX_TX_BYTES_BOUND, nice=self.nice)
            report.workers, report.pool = checker.workers, checker.kind
            lookahead = self.lookahead_txs or max(4000, 4 * checker.workers * 1000)
            pipeline = _pipeline(self.source, head, checker, lookahead)
            try:
                for item in pipeline:
                    self._block(item)
                    if self.progress:
                        self.progress(item.height, head)
            finally:
                pipeline.close()  # stops the source's fetchers at once on a failure
            if self.upto is None:
                self._head(head)
                self._compare_store(head)
            report.ok = True
        except AuditFailure as exc:
            report.failure = exc.failure
        finally:
            if checker is not None:
                checker.close()
            report.seconds = time.perf_counter() - start
            report.head_height = chain.head.height if report.failure else report.head_height
            report.head_hash, report.state_root = chain.head.block_hash, chain.head.state_root
            report.validators_seen = list(self._seen)
        return report


_END = object()


def _merge(ours: Iterator, theirs: Iterator) -> Iterator[tuple[bytes, bytes | None, bytes | None]]:
    """Walk two key-ordered iterators in step; yield (key, ours, theirs) where they differ."""
    a, b = next(ours, _END), next(theirs, _END)
    while a is not _END or b is not _END:
        if b is _END or (a is not _END and a[0] < b[0]):
            yield a[0], a[1], None
            a = next(ours, _END)
        elif a is _END or b[0] < a[0]:
            yield b[0], None, b[1]
            b = next(theirs, _END)
        else:
            if a[1] != b[1]:
                yield a[0], a[1], b[1]
            a, b = next(ours, _END), next(theirs, _END)


def _store_diff(prefix: bytes, key: bytes, mine: bytes | None, theirs: bytes | None, head: int) -> Failure:
    """Name the height a differing store key belongs to, where the key or value says it."""
    height = head
    what = {PREFIX_STATE: "state value", PREFIX_BLOCK: "stored block", PREFIX_CERT: "stored certificate",
            PREFIX_HASH: "block-hash index", PREFIX_TX: "transaction index", PREFIX_RECEIPT: "stored receipt"}[prefix]
    rest = key[len(prefix):]
    if prefix in (PREFIX_BLOCK, PREFIX_CERT, PREFIX_RECEIPT) and len(rest) >= 8:
        height = int.from_bytes(rest[:8], "big")
    elif prefix == PREFIX_HASH:
        for v in (mine, theirs):
            if v is not None and len(v) == 8:
                height = min(height, int.from_bytes(v, "big"))
    elif prefix == PREFIX_TX:
        for v in (mine, theirs):
            try:
                height = min(height, decode(v)[0]) if v is not None else height
            except (EncodingError, IndexError, TypeError):
                pass
    shown = rest.decode("ascii", "replace") if prefix == PREFIX_STATE else rest.hex()
    if theirs is None:
        msg = f"{what} {shown} is missing from the source"
    elif mine is None:
        msg = f"the source holds a {what} {shown} that replay does not produce"
    else:
        msg = f"{what} {shown} differs from the replayed one"
    code = "state_mismatch" if prefix == PREFIX_STATE else "index_mismatch"
    return Failure(height, code, msg, mine, theirs)


def replay(source: BlockSource, genesis_doc: dict, genesis_hash: bytes, **kwargs) -> Report:
    """Rebuild `source`'s chain from the genesis and verify everything.

    A chain that does not verify gives a Report with `ok` False and its `failure`; only a
    source that cannot be read at all raises (`audit.source.SourceError`).
    """
    return Replayer(source, genesis_doc, genesis_hash, **kwargs).run()
