"""Transaction envelope: strict decoding, signature, hash, stateless admission checks."""

from __future__ import annotations

import hashlib

import pytest

from ledger.crypto import Signer
from ledger.encoding import encode
from ledger.errors import EncodingError, TxRejected
from ledger.tx import DEFAULT_MAX_TX_BYTES, Tx, check_stateless, decode_tx, make_tx
from ledger.crypto import address_from_payload

SIGNER = Signer(bytes(range(32)))
OTHER = Signer(bytes(32))
CHAIN = "cxl-test"


def good():
    return make_tx(SIGNER, CHAIN, 3, "transfer", {"to": OTHER.address, "amount": 5}, expiry=9)


def test_round_trip_and_hash():
    stx = good()
    assert stx.hash == hashlib.sha256(stx.raw).digest()
    back = decode_tx(stx.raw)
    assert back == stx
    assert back.tx.nonce == 3 and back.tx.expiry == 9 and back.tx.payload["amount"] == 5
    assert back.tx.sender_address == SIGNER.address
    assert back.verify_signature()
    check_stateless(back, CHAIN)


def test_hash_covers_signature_and_every_field():
    a = good()
    variants = [
        make_tx(SIGNER, CHAIN, 4, "transfer", {"to": OTHER.address, "amount": 5}, expiry=9),
        make_tx(SIGNER, CHAIN, 3, "transfer", {"to": OTHER.address, "amount": 6}, expiry=9),
        make_tx(SIGNER, CHAIN, 3, "transfer", {"to": OTHER.address, "amount": 5}, expiry=10),
        make_tx(SIGNER, CHAIN, 3, "propose", {"to": OTHER.address, "amount": 5}, expiry=9),
        make_tx(SIGNER, "other", 3, "transfer", {"to": OTHER.address, "amount": 5}, expiry=9),
    ]
    assert len({a.hash} | {v.hash for v in variants}) == 6
    assert len({a.signature} | {v.signature for v in variants}) == 6


def test_sign_with_wrong_key_refused():
    tx = Tx(CHAIN, SIGNER.public_key, 0, "transfer", {})
    with pytest.raises(TxRejected) as exc:
        tx.sign(OTHER)
    assert exc.value.code == "wrong_signer"


def test_wrong_chain_rejected_by_check_stateless():
    stx = good()
    with pytest.raises(TxRejected) as exc:
        check_stateless(stx, "cxl-main")
    assert exc.value.code == "wrong_chain"


def test_bad_signature_rejected_by_check_stateless():
    stx = good()
    wire = [stx.tx.to_wire(), bytes([stx.signature[0] ^ 1]) + stx.signature[1:]]
    forged = decode_tx(encode(wire))
    assert not forged.verify_signature()
    with pytest.raises(TxRejected) as exc:
        check_stateless(forged, CHAIN)
    assert exc.value.code == "bad_signature"
    # a signature by another key over the same body
    other_sig = OTHER.sign(stx.tx.signing_bytes())
    with pytest.raises(TxRejected):
        check_stateless(decode_tx(encode([stx.tx.to_wire(), other_sig])), CHAIN)
    # changing the body under the original signature
    body = stx.tx.to_wire()
    body[2] = 4
    with pytest.raises(TxRejected):
        check_stateless(decode_tx(encode([body, stx.signature])), CHAIN)


def _wire(**changes):
    stx = good()
    body = stx.tx.to_wire()
    names = ["chain_id", "sender", "nonce", "type", "payload", "expiry"]
    for k, v in changes.items():
        body[names.index(k)] = v
    return [body, stx.signature]


SIG = b"\x01" * 64


@pytest.mark.parametrize(
    "wire",
    [
        [],
        [_wire()[0]],
        _wire() + [b""],
        [_wire()[0][:5], SIG],
        [_wire()[0] + [0], SIG],
        {"tx": 1},
        [_wire()[0], SIG[:63]],
        [_wire()[0], SIG + b"\x00"],
        [_wire()[0], "sig"],
        _wire(chain_id=b"cxl-test"),
        _wire(chain_id=1),
        _wire(sender=SIGNER.public_key[:31]),
        _wire(sender=SIGNER.public_key + b"\x00"),
        _wire(sender=SIGNER.public_key.hex()),
        _wire(nonce=-1),
        _wire(nonce=True),
        _wire(nonce="3"),
        _wire(type=""),
        _wire(type="x" * 33),
        _wire(type=b"transfer"),
        _wire(payload=[1, 2]),
        _wire(payload=None),
        _wire(expiry=-5),
        _wire(expiry=False),
        _wire(expiry=None),
    ],
)
def test_decode_rejects_malformed(wire):
    with pytest.raises(EncodingError):
        decode_tx(encode(wire))


def test_decode_rejects_non_canonical_and_trailing():
    raw = good().raw
    with pytest.raises(EncodingError):
        decode_tx(raw + b"\x00")
    with pytest.raises(EncodingError):
        decode_tx(raw[:-1])
    # the nonce 3 (0x03) re-encoded as uint8 0xcc 0x03: same value, non-canonical
    i = raw.index(b"\x03\xa8transfer")
    padded = raw[:i] + b"\xcc\x03" + raw[i + 1:]
    with pytest.raises(EncodingError):
        decode_tx(padded)


def test_oversize_rejected():
    big = make_tx(SIGNER, CHAIN, 0, "transfer", {"memo": "x" * DEFAULT_MAX_TX_BYTES})
    assert len(big.raw) > DEFAULT_MAX_TX_BYTES
    with pytest.raises(EncodingError):
        decode_tx(big.raw)
    small = good()
    with pytest.raises(EncodingError):
        decode_tx(small.raw, max_size=len(small.raw) - 1)
    assert decode_tx(small.raw, max_size=len(small.raw)) == small


@pytest.mark.parametrize("blob", [b"", b"\x00", b"\xc1", b"\x92\x90", encode(None), encode([None, None])])
def test_garbage_is_encoding_error(blob):
    with pytest.raises(EncodingError):
        decode_tx(blob)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_transactions_are_rejected_or_exact(data):
    raw = bytearray(good().raw)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    mutated = bytes(raw)
    try:
        stx = decode_tx(mutated)
    except EncodingError:
        return
    # whatever decodes is exactly what its fields encode to, and is hashed as such
    assert encode([stx.tx.to_wire(), stx.signature]) == mutated
    assert stx.hash == hashlib.sha256(mutated).digest()
    if mutated != good().raw:
        assert stx.hash != good().hash
        with pytest.raises(TxRejected):  # any change breaks the signature (or the chain id)
            check_stateless(stx, CHAIN)


def test_signed_message_cut_from_raw_equals_the_signing_bytes():
    # the admission path verifies over a slice of the raw bytes; it must be exactly
    # what the sender signed, for any payload shape and chain id
    for chain in ("cxl-test", "c", "x" * 64):
        for payload in ({}, {"to": address_from_payload(bytes(20)), "amount": 1}, {"blob": b"\x00" * 300, "list": [1, "a", None]}):
            stx = make_tx(SIGNER, chain, 7, "transfer", payload)
            again = decode_tx(stx.raw)
            assert again.signed_message() == stx.tx.signing_bytes() == stx.signed_message()
            assert again.verify_signature()
