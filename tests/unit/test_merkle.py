"""RFC 6962 Merkle tree: roots against an independent reference, inclusion proofs."""

from __future__ import annotations

import hashlib

import pytest

from ledger.merkle import EMPTY_ROOT, inclusion_proof, merkle_root, verify_inclusion


def H(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def ref_root(leaves: list[bytes]) -> bytes:
    """MTH from RFC 6962 §2.1, written out independently of ledger.merkle."""
    n = len(leaves)
    if n == 0:
        return H(b"")
    if n == 1:
        return H(b"\x00" + leaves[0])
    k = 1 << ((n - 1).bit_length() - 1)  # largest power of two < n
    return H(b"\x01" + ref_root(leaves[:k]) + ref_root(leaves[k:]))


def ref_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) from RFC 6962 §2.1.1."""
    n = len(leaves)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return ref_path(m, leaves[:k]) + [ref_root(leaves[k:])]
    return ref_path(m - k, leaves[k:]) + [ref_root(leaves[:k])]


def leaves_of(n: int) -> list[bytes]:
    return [f"leaf-{i}".encode() for i in range(n)]


def test_known_vectors():
    a, b, c = b"a", b"b", b"c"
    la, lb, lc = (hashlib.sha256(b"\x00" + x).digest() for x in (a, b, c))
    assert merkle_root([]) == hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert merkle_root([a]) == la
    assert merkle_root([a, b]) == hashlib.sha256(b"\x01" + la + lb).digest()
    # three leaves: left subtree holds two (largest power of two below 3)
    assert merkle_root([a, b, c]) == hashlib.sha256(
        b"\x01" + hashlib.sha256(b"\x01" + la + lb).digest() + lc
    ).digest()
    # a fixed hex vector, so a change in both implementations is still noticed
    assert merkle_root([a]).hex() == "022a6979e6dab7aa5ae4c3e5e45f7e977112a7e63593820dbec1ec738a24f93c"


def test_leaf_and_node_domains_are_separated():
    # a two-leaf tree's root is not the leaf hash of the concatenated children
    la, lb = H(b"\x00a"), H(b"\x00b")
    assert merkle_root([b"a", b"b"]) != merkle_root([b"\x01" + la + lb])


@pytest.mark.parametrize("n", range(0, 34))
def test_root_matches_reference(n):
    assert merkle_root(leaves_of(n)) == ref_root(leaves_of(n))


@pytest.mark.parametrize("n", range(1, 34))
def test_inclusion_proofs(n):
    leaves = leaves_of(n)
    root = merkle_root(leaves)
    for i in range(n):
        proof = inclusion_proof(leaves, i)
        assert proof == ref_path(i, leaves)
        assert verify_inclusion(leaves[i], i, n, proof, root)
        # wrong leaf, index, size or root
        assert not verify_inclusion(leaves[i] + b"x", i, n, proof, root)
        if n > 1:
            assert not verify_inclusion(leaves[i], (i + 1) % n, n, proof, root)
        assert not verify_inclusion(leaves[i], i, n, proof, H(root))
        assert not verify_inclusion(leaves[i], n, n, proof, root)
        assert not verify_inclusion(leaves[i], -1, n, proof, root)


@pytest.mark.parametrize("n", [2, 3, 5, 8, 13, 33])
def test_tampered_proofs_rejected(n):
    leaves = leaves_of(n)
    root = merkle_root(leaves)
    for i in range(n):
        proof = inclusion_proof(leaves, i)
        for j in range(len(proof)):
            bad = list(proof)
            bad[j] = bytes([bad[j][0] ^ 1]) + bad[j][1:]
            assert not verify_inclusion(leaves[i], i, n, bad, root)
        assert not verify_inclusion(leaves[i], i, n, proof[:-1], root)
        assert not verify_inclusion(leaves[i], i, n, proof + [root], root)
        if len(proof) > 1:
            assert not verify_inclusion(leaves[i], i, n, list(reversed(proof)), root)


def test_proof_index_out_of_range():
    with pytest.raises(IndexError):
        inclusion_proof(leaves_of(3), 3)
    with pytest.raises(IndexError):
        inclusion_proof([], 0)
