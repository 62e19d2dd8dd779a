"""The chain: genesis, block building and validation, atomic commit, indexes and reads.

A block and every effect of it (state writes, the block, its certificate, the tx index,
receipts, the head pointer) are written in one synced batch, so a crash leaves the store
exactly at a block boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger import accounts, heartbeat
from ledger.block import (
    HEADER_FORMAT,
    ZERO_HASH,
    Block,
    Certificate,
    Header,
    next_validators_hash,
    validator_set_hash,
)
from ledger.context import BlockContext
from ledger.encoding import decode, encode
from ledger.errors import BlockInvalid, EncodingError, StoreError
from ledger.execution import BlockResult, NotIncludable, Receipt, execute_block
from ledger.genesis_state import genesis_tree, genesis_view
from ledger.merkle import inclusion_proof, merkle_root
from ledger.state import StateView
from ledger.statetree import DEFAULT_VERSIONS_KEPT, PREFIX_ROOT, prune_puts
from ledger.store.base import (
    PREFIX_BLOCK,
    PREFIX_CERT,
    PREFIX_HASH,
    PREFIX_META,
    PREFIX_RECEIPT,
    PREFIX_STATE,
    PREFIX_TX,
    Store,
)
from ledger.tx import SignedTx, decode_tx

META_GENESIS = PREFIX_META + b"genesis"
META_HEAD = PREFIX_META + b"head"
META_HEAD_VALIDATORS = PREFIX_META + b"head_validators"
META_HEADER_FORMAT = PREFIX_META + b"header_format"
# m/vset/<height 8B> -> encode(validators): block <height> changed the validator set; the
# value is the set (state key `validators`) that decides height+1 onwards
PREFIX_VSET = PREFIX_META + b"vset/"
# m/base -> encode(height): a store installed from a state-sync snapshot at that height
# holds no block below it (absent: the store replayed from genesis)
META_BASE = PREFIX_META + b"base"


def h8(height: int) -> bytes:
    return height.to_bytes(8, "big")


@dataclass(frozen=True, slots=True)
class Head:
    height: int
    block_hash: bytes
    state_root: bytes
    time_ms: int


@dataclass(frozen=True, slots=True)
class TxRecord:
    height: int
    index: int
    tx: SignedTx
    receipt: Receipt


class Chain:
    def __init__(self, store: Store, genesis_doc: dict, genesis_hash: bytes, *,
                 state_versions_kept: int = DEFAULT_VERSIONS_KEPT):
        """`state_versions_kept`: how many recent heights of the state tree stay provable
        (older tree nodes are pruned as blocks commit; the current state is always kept)."""
        if state_versions_kept < 1:
            raise ValueError("state_versions_kept must be at least 1")
        self.store = store
        self.state_versions_kept = state_versions_kept
        self.chain_id = genesis_doc["chain_id"]
        self.genesis_doc = genesis_doc
        self.genesis_hash = genesis_hash
        stored = store.get(META_GENESIS)
        if stored is None:
            self._write_genesis()
        elif stored != genesis_hash:
            raise StoreError(
                f"this data directory holds chain with genesis {stored.hex()}, not {genesis_hash.hex()}; "
                "use the genesis file it was created with, or a fresh --home",
                "wrong_genesis",
            )
        fmt = store.get(META_HEADER_FORMAT)
        if fmt is None or decode(fmt) != HEADER_FORMAT:
            found = "no header format mark" if fmt is None else f"header format {decode(fmt)!r}"
            raise StoreError(
                f"old_header_format: this data directory was written with an older block header format ({found}; this cxl "
                f"writes format {HEADER_FORMAT}, whose headers carry next_validators_hash): its blocks cannot "
                "be served or extended; start from a fresh --home and let the node sync from its peers",
                "old_header_format",
            )
        h, block_hash, root, time_ms = decode(store.get(META_HEAD))
        if store.get(PREFIX_ROOT + h8(h)) is None:
            raise StoreError(
                f"this data directory has no state tree at its head (height {h}): it was written by an older "
                "cxl whose state root was a digest of write sets; start from a fresh --home",
                "no_state_tree",
            )
        self.head = Head(h, block_hash, root, time_ms)
        self.head_validator_keys: list[bytes] = decode(store.get(META_HEAD_VALIDATORS))

    def _write_genesis(self) -> None:
        state = genesis_view(self.store, self.genesis_doc)
        tree = genesis_tree(state)
        root = tree.root
        puts = state.store_writes()
        puts.update(tree.puts)
        puts[META_GENESIS] = self.genesis_hash
        puts[META_HEAD] = encode([0, ZERO_HASH, root, self.genesis_doc["genesis_time_ms"]])
        puts[META_HEAD_VALIDATORS] = encode([])
        puts[META_HEADER_FORMAT] = encode(HEADER_FORMAT)
        self.store.write(puts, sync=True)

    # state reads -------------------------------------------------------------
    def state(self) -> StateView:
        return StateView(self.store)

    @property
    def height(self) -> int:
        return self.head.height

    @property
    def base_height(self) -> int:
        """The height of the state this store started from: 0 for a store replayed from
        genesis (it holds blocks 1 onwards), H for one installed from a state-sync snapshot
        at H (it holds block H and its certificate onwards, nothing below)."""
        raw = self.store.get(META_BASE)
        return 0 if raw is None else decode(raw)

    @property
    def params(self) -> dict:
        return accounts.params(self.state())

    @property
    def validators(self) -> list[dict]:
        """The validator set that decides the next height."""
        return accounts.validators(self.state())

    @property
    def validator_keys(self) -> list[bytes]:
        return [v["key"] for v in self.validators]

    def block_context(self, height: int, time_ms: int) -> BlockContext:
        return BlockContext(self.chain_id, height, time_ms, self.params)

    # heartbeat blocks (ledger/heartbeat.py) -----------------------------------
    def heartbeat_due(self, time_ms: int) -> str | None:
        """Why an empty block at `time_ms` on top of the head is due, or None."""
        return heartbeat.due_reason(self.state(), self.head.time_ms, time_ms)

    def next_heartbeat_ms(self) -> int | None:
        """The earliest block time at which an empty block is due on top of the head."""
        return heartbeat.next_due_ms(self.state(), self.head.time_ms)

    # building and validating ---------------------------------------------------
    def build_block(
        self,
        txs: list[SignedTx],
        *,
        time_ms: int,
        view: int,
        proposer: bytes,
        last_cert: Certificate | None,
        verified: frozenset[bytes] | set[bytes] = frozenset(),
    ) -> tuple[Block, BlockResult]:
        """Proposer side: execute `txs`, drop the ones that cannot be included, seal a block."""
        height = self.head.height + 1
        time_ms = max(time_ms, self.head.time_ms + 1)
        # never seal a block validate_block would refuse: oversize txs are excluded, and
        # anything past max_block_txs waits for a later block
        params = self.params
        max_tx = params.get("max_tx_bytes", 64 * 1024)
        oversize = [t for t in txs if len(t.raw) > max_tx]
        txs = [t for t in txs if len(t.raw) <= max_tx][: params.get("max_block_txs", 2000)]
        result = execute_block(
            self.store, self.block_context(height, time_ms), txs, self.head.state_root,
            verified=verified, drop_invalid=True,
        )
        result.excluded.extend(
            (t, "too_large", f"transaction is {len(t.raw)} bytes, above max_tx_bytes {max_tx}") for t in oversize
        )
        header = Header(
            chain_id=self.chain_id, height=height, view=view, time_ms=time_ms,
            parent_hash=self.head.block_hash,
            txs_root=merkle_root([t.raw for t in result.txs]),
            results_root=result.results_root, state_root=result.state_root,
            proposer=proposer, validator_set_hash=validator_set_hash(self.validator_keys),
            next_validators_hash=next_validators_hash([v["key"] for v in result.validators]),
            last_cert_hash=ZERO_HASH if last_cert is None else last_cert.hash,
        )
        return Block(header, tuple(t.raw for t in result.txs), last_cert), result

    def validate_block(
        self, block: Block, *, now_ms: int | None = None, verified: frozenset[bytes] | set[bytes] = frozenset()
    ) -> BlockResult:
        """Replica side: every header field, the parent's certificate, and re-execution."""
        hd = block.header
        where = f"block {hd.height}"
        if hd.chain_id != self.chain_id:
            raise BlockInvalid(f"{where}: chain id {hd.chain_id!r}, expected {self.chain_id!r}", "wrong_chain")
        if hd.height != self.head.height + 1:
            raise BlockInvalid(f"{where}: expected height {self.head.height + 1}", "wrong_height")
        if hd.parent_hash != self.head.block_hash:
            raise BlockInvalid(f"{where}: parent hash does not match block {self.head.height}", "bad_parent")
        if hd.time_ms <= self.head.time_ms:
            raise BlockInvalid(f"{where}: time {hd.time_ms} is not after the parent's {self.head.time_ms}", "bad_time")
        if now_ms is not None and hd.time_ms > now_ms + self.params.get("time_skew_ms", 2000):
            raise BlockInvalid(f"{where}: time {hd.time_ms} is too far in the future", "bad_time")
        if not block.txs and self.heartbeat_due(hd.time_ms) is None:
            raise BlockInvalid(f"{where}: an empty block at time {hd.time_ms} is not due (no due transition, no "
                               "pending validator change, heartbeat_interval_ms not reached)", "empty_block_not_due")
        keys = self.validator_keys
        if hd.proposer not in keys:
            raise BlockInvalid(f"{where}: proposer {hd.proposer.hex()} is not a validator", "bad_proposer")
        if hd.validator_set_hash != validator_set_hash(keys):
            raise BlockInvalid(f"{where}: validator set hash does not match", "bad_validator_set")
        self._check_last_cert(block)
        if len(block.txs) > self.params.get("max_block_txs", 2000):
            raise BlockInvalid(f"{where}: {len(block.txs)} transactions is above max_block_txs", "too_many_txs")
        if merkle_root(list(block.txs)) != hd.txs_root:
            raise BlockInvalid(f"{where}: transactions root does not match its transactions", "bad_txs_root")
        max_tx = self.params.get("max_tx_bytes", 64 * 1024)
        try:
            txs = [decode_tx(raw, max_tx) for raw in block.txs]
        except EncodingError as exc:
            raise BlockInvalid(f"{where}: undecodable transaction: {exc}", "bad_tx") from exc
        try:
            result = execute_block(
                self.store, self.block_context(hd.height, hd.time_ms), txs, self.head.state_root, verified=verified
            )
        except NotIncludable as exc:
            raise BlockInvalid(f"{where}: {exc.message}", exc.code) from exc
        if result.results_root != hd.results_root:
            raise BlockInvalid(f"{where}: results root differs from re-execution", "bad_results_root")
        if result.state_root != hd.state_root:
            raise BlockInvalid(f"{where}: state root differs from re-execution", "bad_state_root")
        if next_validators_hash([v["key"] for v in result.validators]) != hd.next_validators_hash:
            raise BlockInvalid(f"{where}: next_validators_hash is not the hash of the validator set this block "
                               "installs for the next height", "bad_next_validators")
        return result

    def _check_last_cert(self, block: Block) -> None:
        hd, cert = block.header, block.last_cert
        where = f"block {hd.height}"
        if hd.height == 1:
            if cert is not None or hd.last_cert_hash != ZERO_HASH:
                raise BlockInvalid(f"{where}: the first block carries no parent certificate", "bad_last_cert")
            return
        if cert is None:
            raise BlockInvalid(f"{where}: missing the certificate of its parent", "bad_last_cert")
        if cert.hash != hd.last_cert_hash:
            raise BlockInvalid(f"{where}: last_cert_hash does not match the carried certificate", "bad_last_cert")
        if cert.height != hd.height - 1 or cert.block_hash != hd.parent_hash:
            raise BlockInvalid(f"{where}: carried certificate is not for its parent", "bad_last_cert")
        cert.verify(self.chain_id, self.head_validator_keys)

    # committing ------------------------------------------------------------------
    def commit_block(self, block: Block, cert: Certificate, result: BlockResult) -> None:
        """Store a validated block, its certificate and all its effects in one synced batch."""
        hd = block.header
        if hd.height != self.head.height + 1 or hd.parent_hash != self.head.block_hash:
            raise BlockInvalid(f"block {hd.height} does not extend head {self.head.height}", "not_next")
        if cert.height != hd.height or cert.block_hash != block.hash:
            raise BlockInvalid(f"certificate does not certify block {hd.height}", "bad_certificate")
        keys = self.validator_keys
        cert.verify(self.chain_id, keys)
        puts: dict[bytes, bytes | None] = {PREFIX_STATE + k: v for k, v in result.writes.items()}
        height = hd.height
        puts[PREFIX_BLOCK + h8(height)] = block.encode()
        puts[PREFIX_CERT + h8(height)] = cert.encode()
        puts[PREFIX_HASH + block.hash] = h8(height)
        for i, (stx, receipt) in enumerate(zip(result.txs, result.receipts)):
            puts[PREFIX_TX + stx.hash] = encode([height, i])
            puts[PREFIX_RECEIPT + h8(height) + i.to_bytes(4, "big")] = receipt.encode()
        puts[META_HEAD] = encode([height, block.hash, hd.state_root, hd.time_ms])
        puts[META_HEAD_VALIDATORS] = encode(keys)
        if [v["key"] for v in result.validators] != keys:
            puts[PREFIX_VSET + h8(height)] = encode(result.validators)
        # the tree's new nodes, and the deletes of versions that fell out of the window
        puts.update(result.tree_puts)
        puts.update(prune_puts(self.store, height, self.state_versions_kept, pending=result.tree_puts))
        self.store.write(puts, sync=True)
        self.head = Head(height, block.hash, hd.state_root, hd.time_ms)
        self.head_validator_keys = keys

    def apply_certified(self, block: Block, cert: Certificate, *, now_ms: int | None = None) -> BlockResult:
        """Catch-up: verify the certificate, validate and execute, commit."""
        if cert.height != block.height or cert.block_hash != block.hash:
            raise BlockInvalid(f"certificate does not certify block {block.height}", "bad_certificate")
        cert.verify(self.chain_id, self.validator_keys)
        result = self.validate_block(block, now_ms=now_ms)
        self.commit_block(block, cert, result)
        return result

    # reads ---------------------------------------------------------------------------
    def validator_changes(self, from_height: int, limit: int) -> list[tuple[int, list[dict]]]:
        """(height, new set) for each block at or above `from_height` that changed the
        validator set, oldest first, at most `limit`: the set decides height+1 onwards."""
        out = []
        for key, value in self.store.iterate(PREFIX_VSET):
            height = int.from_bytes(key[len(PREFIX_VSET):], "big")
            if height < from_height:
                continue
            out.append((height, decode(value)))
            if len(out) >= limit:
                break
        return out

    def get_block(self, height: int) -> Block | None:
        raw = self.store.get(PREFIX_BLOCK + h8(height))
        return None if raw is None else Block.decode(raw)

    def get_block_raw(self, height: int) -> bytes | None:
        return self.store.get(PREFIX_BLOCK + h8(height))

    def get_cert(self, height: int) -> Certificate | None:
        raw = self.store.get(PREFIX_CERT + h8(height))
        return None if raw is None else Certificate.from_wire(decode(raw))

    def height_of(self, block_hash: bytes) -> int | None:
        raw = self.store.get(PREFIX_HASH + block_hash)
        return None if raw is None else int.from_bytes(raw, "big")

    def receipts(self, height: int) -> list[Receipt]:
        return [Receipt.from_wire(decode(v)) for _, v in self.store.iterate(PREFIX_RECEIPT + h8(height))]

    def get_tx(self, tx_hash: bytes) -> TxRecord | None:
        raw = self.store.get(PREFIX_TX + tx_hash)
        if raw is None:
            return None
        height, index = decode(raw)
        block = self.get_block(height)
        receipt = Receipt.from_wire(decode(self.store.get(PREFIX_RECEIPT + h8(height) + index.to_bytes(4, "big"))))
        return TxRecord(height, index, decode_tx(block.txs[index], len(block.txs[index])), receipt)

    def tx_proof(self, tx_hash: bytes) -> dict | None:
        """Everything needed to verify a transaction's inclusion and result offline."""
        rec = self.get_tx(tx_hash)
        if rec is None:
            return None
        block = self.get_block(rec.height)
        receipts = self.receipts(rec.height)
        return {
            "height": rec.height,
            "index": rec.index,
            "header": block.header,
            "certificate": self.get_cert(rec.height),
            "tx": rec.tx.raw,
            "tx_proof": inclusion_proof(list(block.txs), rec.index),
            "receipt": rec.receipt,
            "receipt_proof": inclusion_proof([r.encode() for r in receipts], rec.index),
            "tx_count": len(block.txs),
        }

