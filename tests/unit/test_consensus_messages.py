"""Consensus message wire forms, signatures and the persisted signing record."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from consensus.messages import (
    Commit, MessageRefused, NewView, PreparedCert, Prepare, ViewChange, check_message, decode_message, encode_message, make_commit,
    make_new_view, make_prepare, make_preprepare, make_view_change, signed_bytes, verify_message,
)
from consensus.state import SignedState
from ledger.block import Certificate, commit_signing_bytes
from ledger.crypto import Signer
from ledger.encoding import decode, encode, sha256
from ledger.errors import EncodingError

CHAIN = "cxl-test"
KEYS = [Signer(sha256(b"unit-key-%d" % i)) for i in range(4)]
VALS = [k.public_key for k in KEYS]
H = sha256(b"block")
OUTSIDER = Signer(sha256(b"outsider"))


def ok(msg, chain=CHAIN, vals=VALS) -> bool:
    return verify_message(msg, chain, vals, sha256)  # these tests' blocks hash with sha256


def prepared_cert(view=0, height=5):
    pp = make_preprepare(KEYS[0], CHAIN, view, height, H, b"block")
    return PreparedCert(pp, tuple(make_prepare(k, CHAIN, view, height, H) for k in KEYS[1:3]))


def every_message():
    vc = make_view_change(KEYS[1], CHAIN, 1, 4, prepared_cert())
    vc2 = make_view_change(KEYS[2], CHAIN, 1, 4, None)
    vc3 = make_view_change(KEYS[3], CHAIN, 1, 3, None)
    return [
        make_preprepare(KEYS[0], CHAIN, 0, 5, H, b"block"),
        make_prepare(KEYS[1], CHAIN, 0, 5, H),
        make_commit(KEYS[2], CHAIN, 0, 5, H),
        vc,
        make_new_view(KEYS[1], CHAIN, 1, 5, (vc, vc2, vc3), make_preprepare(KEYS[1], CHAIN, 1, 5, H, b"block")),
        make_new_view(KEYS[1], CHAIN, 1, 5, (vc2, vc3, make_view_change(KEYS[0], CHAIN, 1, 4, None)), None),
    ]


@pytest.mark.parametrize("msg", every_message(), ids=lambda m: type(m).__name__)
def test_round_trip_and_signature(msg):
    data = encode_message(msg)
    assert decode_message(data) == msg
    assert ok(msg)
    assert not ok(msg, "other-chain")  # bound to the chain id
    assert not ok(msg, CHAIN, [OUTSIDER.public_key if v == msg.sender else v for v in VALS])  # signer not a member


def test_exact_wire_arrays():
    pp, prep, com = every_message()[:3]
    assert encode_message(pp) == encode([1, 0, 5, H, b"block", VALS[0], pp.signature])
    assert encode_message(prep) == encode([2, 0, 5, H, VALS[1], prep.signature])
    assert encode_message(com) == encode([3, 0, 5, H, VALS[2], com.signature])


@pytest.mark.parametrize("wire", [
    [], [0, 1], [9, 0, 5, H, VALS[1], b"s" * 64],
    [2, 0, 5, H, VALS[1]],  # missing signature
    [2, 0, 5, H[:31], VALS[1], b"s" * 64],  # short hash
    [2, -1, 5, H, VALS[1], b"s" * 64],  # negative view
    [2, True, 5, H, VALS[1], b"s" * 64],  # bool is not an int
    [2, 0, 5, H, VALS[1][:31], b"s" * 64],  # short key
    [2, 0, 5, H, VALS[1], b"s" * 63],  # short signature
    [2, 0, "5", H, VALS[1], b"s" * 64],
    [4, 1, 4, [[2, 0, 5, H, VALS[1], b"s" * 64], []], VALS[1], b"s" * 64],  # prepared without a pre-prepare
    [5, 1, 5, "nope", None, VALS[1], b"s" * 64],
])
def test_decode_rejects_malformed(wire):
    with pytest.raises(EncodingError):
        decode_message(encode(wire))


def test_decode_rejects_trailing_and_non_canonical_bytes():
    data = encode_message(every_message()[1])
    for bad in (data + b"\x00", b"\xdc\x00\x06" + data[1:], b"", b"\xc1", b"\x92\x02"):
        with pytest.raises(EncodingError):
            decode_message(bad)


def test_domain_separation_between_phases():
    prep = make_prepare(KEYS[1], CHAIN, 0, 5, H)
    as_commit = Commit(prep.view, prep.height, prep.block_hash, prep.sender, prep.signature)
    assert ok(prep) and not ok(as_commit)


def test_bad_signature_and_outsider_are_rejected():
    prep = make_prepare(KEYS[1], CHAIN, 0, 5, H)
    flipped = Prepare(0, 5, H, prep.sender, bytes([prep.signature[0] ^ 1]) + prep.signature[1:])
    outsider = make_prepare(Signer(sha256(b"outsider")), CHAIN, 0, 5, H)
    assert not ok(flipped)
    assert not ok(outsider)


def test_nested_bad_signature_fails_the_whole_message():
    cert = prepared_cert()
    bad_prep = Prepare(0, 5, H, VALS[2], b"\x00" * 64)
    vc = make_view_change(KEYS[1], CHAIN, 1, 4, PreparedCert(cert.preprepare, (cert.prepares[0], bad_prep)))
    with pytest.raises(MessageRefused) as err:
        check_message(vc, CHAIN, VALS, sha256)
    assert err.value.code == "signature"
    others = tuple(make_view_change(k, CHAIN, 1, 4, None) for k in KEYS[2:])
    nv = make_new_view(KEYS[1], CHAIN, 1, 5, (vc,) + others, None)
    with pytest.raises(MessageRefused) as err:
        check_message(nv, CHAIN, VALS, sha256)
    assert err.value.code == "signature"


def test_commit_signatures_form_a_ledger_certificate():
    commits = [make_commit(k, CHAIN, 2, 9, H) for k in KEYS[:3]]
    assert signed_bytes(commits[0], CHAIN) == commit_signing_bytes(CHAIN, 2, 9, H)
    cert = Certificate.build(9, 2, H, {c.sender: c.signature for c in commits})
    cert.verify(CHAIN, VALS)  # raises if not 2f+1 distinct validator signatures


def test_signed_state_round_trip_and_rejection():
    st = SignedState(5, 1, (("vc", H), ("pp", H)), 1, False, 5, H, prepared_cert(0, 5))
    assert SignedState.decode(st.encode()) == st
    assert SignedState.decode(SignedState().encode()) == SignedState()
    for bad in ([5, 1, [["zz", H]], 1, False, 5, None, None], [5, 1, [], 1, 0, 5, None, None],
                [5, 1, [], 1, False, 5, b"x", None], [5, -1, [], 1, False, 5, None, None]):
        with pytest.raises(EncodingError):
            SignedState.from_wire(bad)


def test_mutated_bytes_either_fail_cleanly_or_round_trip_exactly():
    rng = random.Random(7)
    for msg in every_message():
        data = encode_message(msg)
        for _ in range(300):
            mutated = bytearray(data)
            for _ in range(rng.randint(1, 3)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            if rng.random() < 0.2:
                mutated = mutated[: rng.randrange(len(mutated))]
            try:
                decoded = decode_message(bytes(mutated))
            except EncodingError:
                continue
            assert encode_message(decoded) == bytes(mutated)


# -- issue 9 items 2 and 3, issue 14 item 4: what check_message refuses, and NewView size ----

def _cert(block: bytes, view=0, height=5, keys=KEYS):
    h = sha256(block)
    pp = make_preprepare(keys[0], CHAIN, view, height, h, block)
    return PreparedCert(pp, tuple(make_prepare(k, CHAIN, view, height, h) for k in keys[1:3]))


def _refusal(msg) -> str:
    with pytest.raises(MessageRefused) as err:
        check_message(msg, CHAIN, VALS, sha256)
    return err.value.code


def test_block_bytes_that_do_not_hash_to_the_signed_digest_are_refused():
    """The same signed PrePrepare (view, height, digest) with other bytes, in every place a
    block travels: alone, in a ViewChange's prepared certificate, as a NewView's re-proposal."""
    good = make_preprepare(KEYS[0], CHAIN, 0, 5, H, b"block")
    assert ok(good)
    assert _refusal(replace(good, block=b"other")) == "block_hash"
    cert = _cert(b"block")
    swapped = PreparedCert(replace(cert.preprepare, block=b"other"), cert.prepares)
    assert ok(make_view_change(KEYS[1], CHAIN, 1, 4, cert))
    assert _refusal(make_view_change(KEYS[1], CHAIN, 1, 4, swapped)) == "block_hash"
    vcs = tuple(make_view_change(k, CHAIN, 1, 4, cert) for k in KEYS[:3])
    nv = make_new_view(KEYS[1], CHAIN, 1, 5, vcs, make_preprepare(KEYS[1], CHAIN, 1, 5, H, b"block"))
    assert ok(nv)
    assert _refusal(replace(nv, preprepare=replace(nv.preprepare, block=b"other"))) == "block_hash"
    garbage_id = lambda raw: (_ for _ in ()).throw(ValueError("not a block"))  # noqa: E731
    with pytest.raises(MessageRefused):
        check_message(good, CHAIN, VALS, garbage_id)


def test_new_view_carries_the_block_once_and_fits_a_frame_at_the_largest_block():
    """q ViewChanges, each with a prepared certificate for a 3 MiB block (the largest a
    node proposes, node/config.py max_block_bytes), plus the re-proposal: one copy of the
    block on the wire (before: q+1 copies, 12 MiB, over the 4 MiB p2p frame)."""
    big = bytes(3 * 1024 * 1024 + 4096)  # txs at max_block_bytes, plus header and certificate
    h = sha256(big)
    cert = _cert(big)
    vcs = tuple(make_view_change(k, CHAIN, 1, 4, cert) for k in KEYS[:3])
    nv = make_new_view(KEYS[1], CHAIN, 1, 5, vcs, make_preprepare(KEYS[1], CHAIN, 1, 5, h, big))
    data = encode_message(nv)
    assert len(data) < 4 * 1024 * 1024
    assert data.count(big[:1024]) >= 1 and len(data) < len(big) + 64 * 1024
    back = decode_message(data)
    assert back == nv and ok(back)
    assert all(v.prepared.preprepare.block == b"" for v in back.view_changes)
    # a NewView whose ViewChanges still carry their blocks is not canonical: refused on decode
    with pytest.raises(EncodingError):
        decode_message(encode([5, 1, 5, [decode(encode_message(vcs[0]), max_size=len(big) * 2)], None, VALS[1],
                               nv.signature]))


def test_expensive_proofs_are_refused_by_shape_before_any_signature_is_checked():
    """Signatures here are all junk: a refusal with code "shape" shows no signature was
    needed to refuse. An honest NewView has exactly q ViewChanges from distinct validators,
    and a prepared certificate exactly q-1 Prepares from distinct others."""
    junk = b"\x07" * 64
    vc = lambda k, view=1, prepared=None: ViewChange(view, 4, prepared, k.public_key, junk)  # noqa: E731
    pp = make_preprepare(KEYS[0], CHAIN, 0, 5, H, b"block")
    nested = replace(pp, block=b"")
    prep = lambda k: Prepare(0, 5, H, k.public_key, junk)  # noqa: E731
    cases = [
        NewView(1, 5, tuple(vc(k) for k in KEYS), None, VALS[1], junk),  # q+1 view changes
        NewView(1, 5, (vc(KEYS[0]), vc(KEYS[0]), vc(KEYS[2])), None, VALS[1], junk),  # a signer twice
        NewView(1, 5, (vc(KEYS[0]), vc(KEYS[1], 2), vc(KEYS[2])), None, VALS[1], junk),  # another view
        NewView(1, 5, (vc(KEYS[0], prepared=PreparedCert(nested, tuple(prep(k) for k in KEYS[1:]))),
                       vc(KEYS[1]), vc(KEYS[2])), None, VALS[1], junk),  # 3 prepares, q-1 = 2
        ViewChange(1, 4, PreparedCert(pp, (prep(KEYS[1]), prep(KEYS[1]))), VALS[1], junk),  # a prepare twice
        ViewChange(1, 4, PreparedCert(pp, (prep(KEYS[0]), prep(KEYS[1]))), VALS[1], junk),  # primary prepares
        ViewChange(1, 4, PreparedCert(pp, (prep(KEYS[1]), prep(OUTSIDER))), VALS[1], junk),  # outsider
        ViewChange(1, 4, PreparedCert(pp, tuple(prep(k) for k in KEYS[1:]) * 300), VALS[1], junk),  # 900
    ]
    for msg in cases:
        assert _refusal(msg) == "shape", msg
