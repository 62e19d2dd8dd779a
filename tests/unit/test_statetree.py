"""The authenticated state tree: canonical roots, inclusion/exclusion proofs, pruning."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from ledger.encoding import encode
from ledger.statetree import (
    EMPTY_HASH,
    PREFIX_NODE,
    PREFIX_STALE,
    ProofDecodeError,
    StateProof,
    StateTreeError,
    VersionUnavailable,
    apply_writes,
    iter_leaves,
    prove,
    prune_puts,
    root_hash,
    verify_proof,
)
from ledger.store.memory import MemoryStore


def H(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def commit(store, version, writes, keep=None):
    up = apply_writes(store, version, writes)
    store.write(up.puts)
    if keep is not None:
        store.write(prune_puts(store, version, keep))
    return up.root


def fresh_root(model: dict) -> bytes:
    return apply_writes(MemoryStore(), 0, dict(model)).root


# -- the hashing, from the spec alone (docs/protocol.md "State tree") -------------------------


def bit(h: bytes, d: int) -> int:
    return (h[d // 8] >> (7 - d % 8)) & 1


def spec_root(entries: dict[bytes, bytes], depth: int = 0) -> bytes:
    """The root as docs/protocol.md defines it, written independently of ledger/statetree."""
    items = sorted((H(k), H(v)) for k, v in entries.items())
    return _spec(items, depth)


def _spec(items, depth):
    if not items:
        return EMPTY_HASH
    if len(items) == 1:
        kh, vh = items[0]
        return H(b"\x00" + kh + vh)
    left = [i for i in items if bit(i[0], depth) == 0]
    right = [i for i in items if bit(i[0], depth) == 1]
    return H(b"\x01" + _spec(left, depth + 1) + _spec(right, depth + 1))


def test_roots_match_the_documented_hashing():
    assert fresh_root({}) == EMPTY_HASH
    one = {b"params": encode({"a": 1})}
    assert fresh_root(one) == H(b"\x00" + H(b"params") + H(encode({"a": 1})))
    many = {b"bal/%d" % i: encode(i) for i in range(50)}
    assert fresh_root(many) == spec_root(many)


def test_a_known_root_is_pinned():
    # a deliberate pin: changing the hashing or the leaf placement changes this value,
    # and must change docs/protocol.md with it
    entries = {b"a": b"\x01", b"b": b"\x02", b"c": b"\x03"}
    assert fresh_root(entries).hex() == spec_root(entries).hex()
    assert fresh_root(entries).hex() == PINNED_ABC


PINNED_ABC = "2c0f011b61e7845a221a5d4d4bc7a65ea4984cffd31c5a2261e578405c3d27fb"


# -- determinism: the root is a function of the final map -----------------------------------

_keys = hst.sampled_from([b"k%d" % i for i in range(40)] + [b"", b"bal/x", b"\xff" * 3])
_value = hst.one_of(hst.none(), hst.binary(min_size=0, max_size=6))
_block = hst.dictionaries(_keys, _value, max_size=25)


@settings(max_examples=150, deadline=None)
@given(hst.lists(_block, min_size=1, max_size=12), hst.randoms(use_true_random=False))
def test_same_final_map_same_root_whatever_the_history(blocks, rnd):
    store, model = MemoryStore(), {}
    root = None
    for version, writes in enumerate(blocks):
        root = commit(store, version, writes, keep=3)
        for k, v in writes.items():
            if v is None:
                model.pop(k, None)
            else:
                model[k] = v
        assert root == root_hash(store, version)
    # the same map, written at once in another order, and through a different history
    assert root == fresh_root(model) == spec_root(model)
    shuffled = list(model.items())
    rnd.shuffle(shuffled)
    other = MemoryStore()
    commit(other, 0, {k: b"junk" for k in model} | {b"only-then": b"x"})
    assert commit(other, 1, dict(shuffled) | {b"only-then": None}) == root
    assert sorted(iter_leaves(store, len(blocks) - 1)) == sorted(model.items())


@settings(max_examples=150, deadline=None)
@given(hst.lists(_block, min_size=1, max_size=8))
def test_proofs_verify_and_tampering_fails(blocks):
    store, model = MemoryStore(), {}
    for version, writes in enumerate(blocks):
        commit(store, version, writes)
        for k, v in writes.items():
            if v is None:
                model.pop(k, None)
            else:
                model[k] = v
    version = len(blocks) - 1
    root = root_hash(store, version)
    for key in [b"k%d" % i for i in range(45)] + [b"", b"bal/x"]:
        value, proof = prove(store, key, version)
        assert value == model.get(key)
        raw = proof.encode()
        assert verify_proof(root, key, value, raw)
        assert StateProof.decode(raw) == proof
        # a wrong value, a false absence, a false presence, another root: all refused
        assert not verify_proof(root, key, (value or b"") + b"!", raw)
        if value is not None:
            assert not verify_proof(root, key, None, raw)
        assert not verify_proof(H(root), key, value, raw)
        # every single-bit flip of a sibling or the leaf is refused (or does not decode)
        for i in range(len(proof.siblings)):
            sib = bytearray(proof.siblings[i])
            sib[0] ^= 0x80
            forged = StateProof(proof.siblings[:i] + (bytes(sib),) + proof.siblings[i + 1:], proof.leaf)
            assert not verify_proof(root, key, value, forged)
        if proof.leaf is not None:
            kh, vh = proof.leaf
            assert not verify_proof(root, key, value, StateProof(proof.siblings, (kh, H(vh))))


def test_exclusion_by_another_leaf_must_share_the_path():
    store = MemoryStore()
    commit(store, 0, {b"k%d" % i: b"v" for i in range(8)})
    root = root_hash(store, 0)
    # find an absent key whose path ends at some other key's leaf
    for i in range(100, 400):
        value, proof = prove(store, b"absent%d" % i, 0)
        if proof.leaf is not None:
            break
    assert value is None and proof.leaf is not None
    key = b"absent%d" % i
    assert verify_proof(root, key, None, proof)
    # the same leaf claimed for a key whose path it does not lie on
    for j in range(400, 2000):
        other = b"z%d" % j
        kh = H(other)
        if any(bit(kh, d) != bit(proof.leaf[0], d) for d in range(len(proof.siblings))):
            break
    assert not verify_proof(root, other, None, proof)
    # an inclusion proof cannot be reused as an exclusion proof for the key it includes
    value, own = prove(store, b"k3", 0)
    assert not verify_proof(root, b"k3", None, own)


@pytest.mark.parametrize("raw, what", [
    (b"", "does not decode"),
    (b"\xc0", r"expected \[siblings, leaf\]"),
    (encode([[b"x" * 31], None]), "sibling 0"),
    (encode([[b"x" * 32] * 257, None]), "at most 256"),
    (encode([[b"x" * 32], [b"y" * 32]]), "leaf must be"),
    (encode([[b"x" * 32], [b"y" * 32, 5]]), "leaf must be"),
    (encode([[b"x" * 32, EMPTY_HASH], None]), "non-canonical"),
    (encode([[b"x" * 32], None]) + b"\x00", "does not decode"),
    (encode("proof"), r"expected \[siblings, leaf\]"),
])
def test_malformed_proofs_are_typed_errors(raw, what):
    with pytest.raises(ProofDecodeError, match=what) as err:
        verify_proof(EMPTY_HASH, b"k", None, raw)
    assert err.value.code == "bad_proof"


def test_empty_tree_proves_absence():
    store = MemoryStore()
    commit(store, 0, {})
    value, proof = prove(store, b"anything", 0)
    assert value is None and proof == StateProof((), None)
    assert verify_proof(EMPTY_HASH, b"anything", None, proof.encode())
    assert not verify_proof(EMPTY_HASH, b"anything", b"v", proof.encode())


# -- versions and pruning --------------------------------------------------------------------


def test_old_versions_stay_provable_within_the_window_and_are_pruned_beyond():
    store, roots, keep = MemoryStore(), [], 4
    for v in range(20):
        roots.append(commit(store, v, {b"counter": encode(v), b"k%d" % (v % 5): encode(v)}, keep=keep))
    for v in range(16, 20):
        value, proof = prove(store, b"counter", v)
        assert value == encode(v) and verify_proof(roots[v], b"counter", value, proof)
    for v in (0, 10, 15):
        with pytest.raises(VersionUnavailable):
            prove(store, b"counter", v)
    with pytest.raises(VersionUnavailable):
        prove(store, b"counter", 20)
    # pruning leaves only nodes the kept versions reach, and a stale index for them alone
    reachable = set()
    for v in range(16, 20):
        reachable |= _reachable(store, v)
    nodes = {k for k, _ in store.iterate(PREFIX_NODE)}
    assert nodes == reachable
    stale_versions = {int.from_bytes(k[2:10], "big") for k, _ in store.iterate(PREFIX_STALE)}
    assert stale_versions <= set(range(17, 20))


def _reachable(store, version):
    from ledger.statetree import KIND_INTERNAL, _parse_ref, node_key, root_ref

    out, stack = set(), [(root_ref(store, version), 0, 0)]
    while stack:
        ref, depth, path = stack.pop()
        if ref is None:
            continue
        key = node_key(ref.version, depth, path)
        out.add(key)
        if ref.kind == KIND_INTERNAL:
            raw = store.get(key)
            stack.append((_parse_ref(raw[1:42]), depth + 1, path << 1))
            stack.append((_parse_ref(raw[42:83]), depth + 1, (path << 1) | 1))
    return out


def test_steady_churn_keeps_the_store_bounded():
    store = MemoryStore()
    sizes = []
    for v in range(60):
        commit(store, v, {b"k%d" % i: encode(v) for i in range(30)}, keep=2)
        sizes.append(len(store._data))
    assert sizes[-1] == sizes[30]  # same key set, two versions kept: no growth


def test_keep_one_prunes_the_stale_entries_of_the_same_batch():
    store = MemoryStore()
    commit(store, 0, {b"a": b"1", b"b": b"2"}, keep=1)
    up = apply_writes(store, 1, {b"a": b"3"})
    store.write(up.puts | prune_puts(store, 1, 1, pending=up.puts))
    assert not list(store.iterate(PREFIX_STALE))
    assert _reachable(store, 1) == {k for k, _ in store.iterate(PREFIX_NODE)}
    assert verify_proof(up.root, b"a", b"3", prove(store, b"a", 1)[1])


def test_a_missing_node_is_a_state_tree_error():
    store = MemoryStore()
    commit(store, 0, {b"k%d" % i: b"v" for i in range(10)})
    victim = next(k for k, _ in store.iterate(PREFIX_NODE))
    store.write({victim: None})
    with pytest.raises(StateTreeError):
        for i in range(10):
            prove(store, b"k%d" % i, 0)
            apply_writes(store, 1, {b"k%d" % i: b"w"})
