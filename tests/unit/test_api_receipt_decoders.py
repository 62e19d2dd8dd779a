"""Decoders the CLI applies to a node's answers: a crafted proof or receipt raises the
typed `ReceiptError` (never IndexError/KeyError/...), and the CLI says the node sent a
malformed answer instead of printing a traceback. Fuzz targets are bounded hypothesis tests."""

from __future__ import annotations

import base64
import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from audit.receipt import ReceiptError, build_receipt, receipt_from_chain, verify_receipt
from audit.testchain import build_test_chain
from ledger.encoding import encode
from node.views import proof_view

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def bc():
    return build_test_chain(blocks=3)


@pytest.fixture(scope="module")
def proof(bc):
    return json.loads(json.dumps(proof_view(bc.chain.tx_proof(bc.tx_hashes[0]), bc.tx_hashes[0])))


@pytest.fixture(scope="module")
def receipt(bc):
    return json.loads(json.dumps(receipt_from_chain(bc.chain, bc.tx_hashes[0])))


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# msgpack values a hostile node may wrap in base64 or hex: wrong shapes of every kind
wire_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.binary(max_size=40) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=12) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=15,
)
crafted = st.one_of(
    json_values,
    wire_values.map(lambda v: b64(encode(v))),
    wire_values.map(lambda v: encode(v).hex()),
    st.binary(max_size=64).map(b64),
    st.sampled_from([b64(b"\x90"), "90", b64(b"\x91\xc0"), b64(b"\x93\xa0\xa0\x90"), "", {"raw": b64(b"\x90")}]),
)

PROOF_FIELDS = ["header_raw", "certificate_raw", "tx", "receipt_bytes", "receipt", "tx_proof", "receipt_proof",
                "header", "certificate", "height", "index", "tx_count"]


@pytest.mark.parametrize("field,value", [
    ("receipt_bytes", "90"), ("receipt_bytes", encode([1, 2, 3]).hex()), ("receipt_bytes", encode(["ok", "", []]).hex()),
    ("header_raw", b64(b"\x90")), ("certificate_raw", b64(b"\x90")), ("tx", "90"), ("tx_proof", "ab"),
    ("tx_proof", None), ("height", "x"), ("receipt", [1]),
])
def test_crafted_proof_fields_raise_bad_proof(bc, proof, field, value):
    bad = copy.deepcopy(proof) | {field: value}
    if field == "receipt":
        bad.pop("receipt_bytes")
    with pytest.raises(ReceiptError) as err:
        build_receipt(bad, genesis_hash=bc.net.genesis_hash)
    assert err.value.code == "bad_proof"


def test_a_proof_that_is_not_an_object_raises_bad_proof(bc):
    for bad in ([], "x", 3, None):
        with pytest.raises(ReceiptError) as err:
            build_receipt(bad, genesis_hash=bc.net.genesis_hash)
        assert err.value.code == "bad_proof"


@FUZZ
@given(data=st.data())
def test_fuzzed_proofs_only_raise_receipt_error(bc, proof, data):
    bad = copy.deepcopy(proof)
    for name in data.draw(st.lists(st.sampled_from(PROOF_FIELDS), min_size=1, max_size=3, unique=True)):
        if data.draw(st.booleans(), label="drop"):
            bad.pop(name, None)
        else:
            bad[name] = data.draw(crafted, label=name)
    try:
        built = build_receipt(bad, genesis_hash=bc.net.genesis_hash)
    except ReceiptError as exc:
        assert exc.code == "bad_proof" and exc.message
        return
    try:  # a proof that still builds must not verify unless it is the genuine one
        verify_receipt(built, bc.net.doc, bc.net.genesis_hash)
    except ReceiptError:
        pass


RECEIPT_PATHS = [("format",), ("header",), ("header", "raw"), ("certificate", "raw"), ("tx", "raw"), ("result",),
                 ("result", "raw"), ("result", "code"), ("tx_proof",), ("receipt_proof",), ("index",), ("tx_count",),
                 ("validator_changes",), ("genesis_hash",), ("height",), ("tx_hash",)]


@FUZZ
@given(data=st.data())
def test_fuzzed_receipt_files_only_raise_receipt_error(bc, receipt, data):
    bad = copy.deepcopy(receipt)
    for path in data.draw(st.lists(st.sampled_from(RECEIPT_PATHS), min_size=1, max_size=3, unique=True)):
        target = bad
        for key in path[:-1]:
            target = target.get(key) if isinstance(target, dict) else None
        if isinstance(target, dict):
            target[path[-1]] = data.draw(crafted, label="/".join(path))
    try:
        verify_receipt(bad, bc.net.doc, bc.net.genesis_hash)
    except ReceiptError as exc:
        assert exc.code and exc.message


@pytest.mark.parametrize("shape", [[], "x", None, 3])
def test_receipt_file_that_is_not_an_object_is_bad_receipt_file(bc, shape):
    with pytest.raises(ReceiptError) as err:
        verify_receipt(shape, bc.net.doc, bc.net.genesis_hash)
    assert err.value.code == "bad_receipt_file"


def test_result_bytes_with_the_wrong_shape_do_not_verify(bc, receipt):
    bad = copy.deepcopy(receipt)
    bad["result"] = {"raw": b64(b"\x90")}
    with pytest.raises(ReceiptError) as err:
        verify_receipt(bad, bc.net.doc, bc.net.genesis_hash)
    assert err.value.code in ("bad_receipt_file", "bad_receipt_proof")
