"""State-sync snapshot chunks (ledger/snapshot.py): bounded chunks, tampered or reordered
chunks refused, a wrong root refused, and a restore at version H equal to the live tree."""

from __future__ import annotations

import pytest

from ledger import snapshot, statetree
from ledger.encoding import encode
from ledger.snapshot import SnapshotError
from ledger.store.memory import MemoryStore


def live_tree(n: int, versions: int = 3) -> tuple[MemoryStore, int, dict[bytes, bytes]]:
    """A tree written over several versions (updates and deletes), as a chain would."""
    store, model = MemoryStore(), {}
    for v in range(versions):
        writes = {f"k{i}".encode(): f"v{v}-{i}".encode() for i in range(v, n, versions)}
        if v:
            writes[b"k0"] = None
        up = statetree.apply_writes(store, v, writes)
        store.write(up.puts)
        for k, val in writes.items():
            if val is None:
                model.pop(k, None)
            else:
                model[k] = val
    return store, versions - 1, model


def chunks_of(store, version, **bounds) -> list[bytes]:
    return [snapshot.encode_chunk(version, i, c)
            for i, c in enumerate(snapshot.chunk_leaves(statetree.iter_leaves(store, version), **bounds))]


def fetch_all(raws: list[bytes], version: int) -> dict[bytes, bytes]:
    leaves, after = {}, None
    for i, raw in enumerate(raws):
        part = snapshot.decode_chunk(raw, version, i)
        after = snapshot.check_chunk(part, i, after)
        leaves.update(part)
    return leaves


def test_restore_at_a_later_version_gives_the_live_root_and_state():
    store, v, model = live_tree(250)
    raws = chunks_of(store, v, max_leaves=40)
    assert len(raws) == -(-len(model) // 40)
    fresh = MemoryStore()
    restored = snapshot.restore(fresh, v, fetch_all(raws, v), statetree.root_hash(store, v))
    assert restored.root == statetree.root_hash(store, v) and restored.state == model
    fresh.write(restored.tree_puts)
    assert statetree.root_hash(fresh, v) == restored.root
    assert dict(statetree.iter_leaves(fresh, v)) == model
    # the restored tree takes the next block like the live one
    nxt = {b"k1": b"new", b"zz": b"added"}
    assert statetree.apply_writes(fresh, v + 1, nxt).root == statetree.apply_writes(store, v + 1, nxt).root


def test_chunks_are_bounded_by_leaves_and_bytes():
    leaves = [(b"k%d" % i, b"x" * 100) for i in range(50)]
    by_count = list(snapshot.chunk_leaves(leaves, max_leaves=7))
    assert max(map(len, by_count)) == 7 and sum(map(len, by_count)) == 50
    by_bytes = list(snapshot.chunk_leaves(leaves, max_bytes=500))
    assert all(sum(len(k) + len(v) for k, v in c) <= 500 for c in by_bytes) and sum(map(len, by_bytes)) == 50
    assert list(snapshot.chunk_leaves([])) == [[]]


def test_a_tampered_chunk_value_is_refused_at_the_root_check():
    store, v, _ = live_tree(60)
    raws = chunks_of(store, v, max_leaves=16)
    leaves = snapshot.decode_chunk(raws[1], v, 1)
    leaves[0] = (leaves[0][0], b"forged")
    raws[1] = snapshot.encode_chunk(v, 1, leaves)
    with pytest.raises(SnapshotError) as e:
        snapshot.restore(MemoryStore(), v, fetch_all(raws, v), statetree.root_hash(store, v))
    assert e.value.code == "state_root_mismatch"


def test_a_dropped_leaf_is_refused_at_the_root_check():
    store, v, _ = live_tree(60)
    raws = chunks_of(store, v, max_leaves=16)
    raws[2] = snapshot.encode_chunk(v, 2, snapshot.decode_chunk(raws[2], v, 2)[1:])
    with pytest.raises(SnapshotError, match="refusing") as e:
        snapshot.restore(MemoryStore(), v, fetch_all(raws, v), statetree.root_hash(store, v))
    assert e.value.code == "state_root_mismatch"


def test_a_wrong_root_is_refused():
    store, v, _ = live_tree(30)
    with pytest.raises(SnapshotError) as e:
        snapshot.restore(MemoryStore(), v, fetch_all(chunks_of(store, v), v), bytes(32))
    assert e.value.code == "state_root_mismatch"


@pytest.mark.parametrize("raw, why", [
    (b"\xc1", "not a canonical encoding"),
    (encode([5, 0]), "expected"),
    (encode([4, 0, []]), "asked for"),
    (encode([5, 1, []]), "asked for"),
    (encode([5, 0, [[b"k", 3]]]), "key bytes"),
])
def test_a_malformed_chunk_is_refused(raw, why):
    with pytest.raises(SnapshotError, match=why) as e:
        snapshot.decode_chunk(raw, 5, 0)
    assert e.value.code == "bad_snapshot_chunk"


def test_repeated_or_reordered_leaves_are_refused_per_chunk():
    store, v, _ = live_tree(40)
    raws = chunks_of(store, v, max_leaves=10)
    first = snapshot.decode_chunk(raws[0], v, 0)
    after = snapshot.check_chunk(first, 0, None)
    with pytest.raises(SnapshotError, match="out of key-hash order"):
        snapshot.check_chunk(first[-1:], 1, after)       # the last leaf of chunk 0 again
    with pytest.raises(SnapshotError, match="out of key-hash order"):
        snapshot.check_chunk(list(reversed(first)), 0, None)
