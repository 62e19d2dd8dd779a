"""Canonical encoding: round trips, strict decoding, domain-separated signing bytes."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.encoding import (
    DOMAIN_COMMIT,
    DOMAIN_PREPARE,
    DOMAIN_TX,
    decode,
    encode,
    signing_bytes,
)
from ledger.errors import EncodingError

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.binary(max_size=64)
    | st.text(max_size=32)
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=6),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_round_trip(value):
    data = encode(value)
    assert decode(data) == value
    assert encode(decode(data)) == data


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.integers(0, 10), min_size=2, max_size=8))
def test_map_encoding_is_independent_of_insertion_order(d):
    reversed_d = dict(reversed(list(d.items())))
    assert encode(d) == encode(reversed_d)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values, st.data())
def test_mutated_bytes_either_rejected_or_canonical(value, data):
    raw = bytearray(encode(value))
    kind = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate", "append"]))
    if kind == "flip":
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255).filter(lambda b: b != raw[i]))
    elif kind == "insert":
        i = data.draw(st.integers(0, len(raw)))
        raw.insert(i, data.draw(st.integers(0, 255)))
    elif kind == "delete":
        del raw[data.draw(st.integers(0, len(raw) - 1))]
    elif kind == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    else:
        raw += data.draw(st.binary(min_size=1, max_size=4))
    mutated = bytes(raw)
    try:
        out = decode(mutated)
    except EncodingError:
        return
    # anything decode accepts is canonical: re-encoding gives back exactly the input
    assert encode(out) == mutated


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40))
def test_arbitrary_bytes_never_raise_anything_but_encoding_error(blob):
    try:
        out = decode(blob)
    except EncodingError:
        return
    assert encode(out) == blob


@pytest.mark.parametrize(
    "data, why",
    [
        (encode(1) + b"\x00", "trailing byte"),
        (encode([1, 2]) + encode(3), "trailing value"),
        (msgpack.packb(1.5), "float64"),
        (msgpack.packb(1.5, use_single_float=True), "float32"),
        (msgpack.packb([1, 0.0]), "nested float"),
        (b"\x81\x01\x02", "int map key"),
        (msgpack.packb({b"k": 1}, use_bin_type=True), "bytes map key"),
        (b"\x82\xa1b\x01\xa1a\x02", "unsorted keys"),
        (b"\x82\xa1a\x01\xa1a\x02", "duplicate keys"),
        (b"\xcd\x00\x01", "uint16 holding 1"),
        (b"\xcc\x05", "uint8 holding 5"),
        (b"\xd0\x01", "int8 holding 1"),
        (b"\xd1\xff\xff", "int16 holding -1"),
        (b"\xce\x00\x00\x00\x80", "uint32 holding 128"),
        (b"\xcf" + (5).to_bytes(8, "big"), "uint64 holding 5"),
        (b"\xda\x00\x01a", "str16 of length 1"),
        (b"\xdc\x00\x01\x01", "array16 of length 1"),
        (b"\xc5\x00\x02ab", "bin16 of length 2"),
        (b"\xa1\xff", "invalid utf-8"),
        (b"\xd4\x01\x00", "fixext1"),
        (b"\xc7\x00\x05", "empty ext8"),
        (b"\xc7\x03\x05abc", "ext8"),
        (b"\xd6\xff\x00\x00\x00\x01", "timestamp ext"),
        (b"\xc1", "reserved byte"),
        (b"", "empty input"),
        (b"\x92\x01", "truncated array"),
    ],
)
def test_non_canonical_inputs_rejected(data, why):
    with pytest.raises(EncodingError):
        decode(data)


def test_oversize_input_rejected():
    blob = encode(b"x" * 1000)
    with pytest.raises(EncodingError):
        decode(blob, max_size=999)
    assert decode(blob, max_size=len(blob)) == b"x" * 1000


def test_non_bytes_input_rejected():
    with pytest.raises(EncodingError):
        decode("not bytes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [1.0, {1: "a"}, {b"k": 1}, {"a": {2: 3}}, [set()], 2**64, -(2**63) - 1, object(), bytearray(b"x")],
)
def test_encode_refuses_values_without_canonical_form(value):
    with pytest.raises(EncodingError):
        encode(value)


def test_deep_nesting_rejected():
    value: list = []
    for _ in range(40):
        value = [value]
    with pytest.raises(EncodingError):
        encode(value)
    with pytest.raises(EncodingError):
        decode(b"\x91" * 40 + b"\x90")


def test_bool_and_int_are_distinct():
    assert encode(True) != encode(1)
    assert decode(encode(True)) is True
    assert decode(encode(0)) == 0 and decode(encode(0)) is not False


def test_bytes_and_str_are_distinct():
    assert encode(b"ab") != encode("ab")
    assert isinstance(decode(encode(b"ab")), bytes)
    assert isinstance(decode(encode("ab")), str)


def test_signing_bytes_differ_per_domain_and_chain():
    payload = [1, b"\x00" * 32, "x"]
    a = signing_bytes(DOMAIN_TX, "chain-a", payload)
    assert a != signing_bytes(DOMAIN_COMMIT, "chain-a", payload)
    assert a != signing_bytes(DOMAIN_PREPARE, "chain-a", payload)
    assert a != signing_bytes(DOMAIN_TX, "chain-b", payload)
    assert a != signing_bytes(DOMAIN_TX, "chain-a", [1, b"\x00" * 32, "y"])
    assert a.endswith(encode(payload))
    assert a.startswith(DOMAIN_TX + b"\x00chain-a\x00")


def test_signing_bytes_refuse_nul():
    with pytest.raises(EncodingError):
        signing_bytes(DOMAIN_TX, "a\x00b", 1)
    with pytest.raises(EncodingError):
        signing_bytes(b"cxl/\x00tx", "a", 1)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=10),
       st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=10))
def test_signing_bytes_chain_ids_never_collide(c1, c2):
    if c1 != c2:
        assert signing_bytes(DOMAIN_TX, c1, [1]) != signing_bytes(DOMAIN_TX, c2, [1])


@pytest.mark.parametrize("value", ["\ud800", ["ok", "\udfff"], {"\ud800": 1}, {"k": "a\udc80"}])
def test_lone_surrogates_are_an_encoding_error(value):
    # not a bare UnicodeEncodeError: callers catch the ledger's own error tree
    with pytest.raises(EncodingError):
        encode(value)


def test_signing_bytes_with_surrogate_chain_id_is_an_encoding_error():
    with pytest.raises(EncodingError):
        signing_bytes(DOMAIN_TX, "\ud800", [1])
