"""State-sync snapshots: the leaves of the state tree at one version, cut into bounded
chunks, and the checks a syncing node runs before it trusts them (pure, deterministic).

A chunk is the canonical encoding of ``[height, index, [[key, value], ...]]``. Leaves come
in key-hash order (``statetree.iter_leaves``); every chunk holds at most ``MAX_CHUNK_LEAVES``
leaves and, unless a single leaf is larger, at most ``MAX_CHUNK_BYTES`` of keys and values.
Nothing in a chunk is trusted: the restored tree's root must equal the certified header's
state root (``restore``), and each chunk must continue the key-hash order of the one before
(``check_chunk``), so a peer that reorders, repeats or drops leaves is caught at once or at
the root check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

from ledger import statetree
from ledger.encoding import decode, encode
from ledger.errors import LedgerError
from ledger.store.base import Store

MAX_CHUNK_LEAVES = 10_000
MAX_CHUNK_BYTES = 4 * 1024 * 1024
MAX_CHUNK_ENCODED = MAX_CHUNK_BYTES + 8 * 1024 * 1024  # a chunk's bytes as received, generous bound


class SnapshotError(LedgerError):
    """A snapshot chunk or a restored state that does not check out."""

    code = "bad_snapshot"


def chunk_leaves(leaves: Iterable[tuple[bytes, bytes]], max_leaves: int = MAX_CHUNK_LEAVES,
                 max_bytes: int = MAX_CHUNK_BYTES) -> Iterator[list[tuple[bytes, bytes]]]:
    """Cut (key, value) pairs, in order, into chunks within both bounds. No leaves: one
    empty chunk (so every snapshot has at least chunk 0)."""
    chunk: list[tuple[bytes, bytes]] = []
    size = 0
    for key, value in leaves:
        n = len(key) + len(value)
        if chunk and (len(chunk) >= max_leaves or size + n > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append((key, value))
        size += n
    yield chunk


def encode_chunk(height: int, index: int, leaves: list[tuple[bytes, bytes]]) -> bytes:
    return encode([height, index, [[k, v] for k, v in leaves]])


def decode_chunk(raw: bytes, height: int, index: int) -> list[tuple[bytes, bytes]]:
    """The leaves of chunk `index` of the snapshot at `height`; SnapshotError if it is not one."""
    try:
        value = decode(raw, max_size=MAX_CHUNK_ENCODED)
    except LedgerError as exc:
        raise SnapshotError(f"chunk {index}: not a canonical encoding ({exc})", "bad_snapshot_chunk") from exc
    if not (isinstance(value, list) and len(value) == 3 and isinstance(value[2], list)):
        raise SnapshotError(f"chunk {index}: expected [height, index, leaves]", "bad_snapshot_chunk")
    if value[0] != height or value[1] != index:
        raise SnapshotError(f"chunk {index}: it says height {value[0]!r} chunk {value[1]!r}, "
                            f"asked for height {height} chunk {index}", "bad_snapshot_chunk")
    leaves = []
    for j, pair in enumerate(value[2]):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, bytes) for x in pair)):
            raise SnapshotError(f"chunk {index} leaf {j}: expected [key bytes, value bytes]", "bad_snapshot_chunk")
        leaves.append((pair[0], pair[1]))
    if len(leaves) > MAX_CHUNK_LEAVES:
        raise SnapshotError(f"chunk {index}: {len(leaves)} leaves, at most {MAX_CHUNK_LEAVES}", "bad_snapshot_chunk")
    return leaves


def check_chunk(leaves: list[tuple[bytes, bytes]], index: int, after: bytes | None) -> bytes | None:
    """Each leaf's key hash must be above the one before (`after`: the last of the previous
    chunk); returns the last key hash of this chunk (`after` if it is empty)."""
    last = after
    for j, (key, _) in enumerate(leaves):
        kh = statetree.key_hash(key)
        if last is not None and kh <= last:
            raise SnapshotError(f"chunk {index} leaf {j}: out of key-hash order (a repeated or reordered leaf)",
                                "bad_snapshot_chunk")
        last = kh
    return last


@dataclass(frozen=True, slots=True)
class Restored:
    version: int
    root: bytes
    state: dict[bytes, bytes]      # state key (without s/) -> canonical value
    tree_puts: dict[bytes, bytes | None]


def restore(store: Store, version: int, leaves: dict[bytes, bytes], expected_root: bytes) -> Restored:
    """Build the tree of `version` from all the snapshot's leaves; refuse (code
    ``state_root_mismatch``) unless its root is `expected_root`. Writes nothing."""
    update = statetree.build_version(store, version, dict(leaves))
    if update.root != expected_root:
        raise SnapshotError(f"the snapshot's leaves give state root {update.root.hex()}, the certified header at "
                            f"height {version} says {expected_root.hex()}: refusing it", "state_root_mismatch")
    return Restored(version, update.root, dict(leaves), update.puts)


def install_puts(genesis_hash: bytes, block, cert, restored: Restored, validator_keys: list[bytes]) -> dict:
    """The store writes that make an empty data directory a chain whose head is the
    snapshot's certified block: the state and its tree at that height, the block and its
    certificate, the head pointer, the keys that certified it (the next block's carried
    certificate is checked against them) and ``m/base`` = the height (the first block this
    store holds; earlier blocks, receipts and the validator-change index are not here).

    Pure: the caller has checked the certificate against ``validator_keys`` and the tree's
    root against the header (``restore``), and writes the result in one synced batch."""
    from ledger.block import HEADER_FORMAT
    from ledger.chain import (META_BASE, META_GENESIS, META_HEAD, META_HEAD_VALIDATORS,
                              META_HEADER_FORMAT, h8)
    from ledger.store.base import PREFIX_BLOCK, PREFIX_CERT, PREFIX_HASH, PREFIX_STATE

    hd = block.header
    if restored.version != hd.height or restored.root != hd.state_root:
        raise SnapshotError("the restored tree is not the snapshot block's state", "state_root_mismatch")
    puts: dict[bytes, bytes | None] = {PREFIX_STATE + k: v for k, v in restored.state.items()}
    puts.update(restored.tree_puts)
    puts[PREFIX_BLOCK + h8(hd.height)] = block.encode()
    puts[PREFIX_CERT + h8(hd.height)] = cert.encode()
    puts[PREFIX_HASH + block.hash] = h8(hd.height)
    puts[META_GENESIS] = genesis_hash
    puts[META_HEADER_FORMAT] = encode(HEADER_FORMAT)
    puts[META_HEAD] = encode([hd.height, block.hash, hd.state_root, hd.time_ms])
    puts[META_HEAD_VALIDATORS] = encode([bytes(k) for k in validator_keys])
    puts[META_BASE] = encode(hd.height)
    return puts
