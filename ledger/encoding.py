"""Canonical encoding and domain-separated signing roots: the one place that decides bytes.

Everything that is signed or hashed in cxl goes through `encode`, and everything that
comes from the outside goes through `decode`. The canonical form is msgpack with:

* integers in their shortest form (msgpack's packer already does this), no floats;
* bytes as ``bin``, text as ``str`` (UTF-8), booleans and nil allowed;
* arrays for fixed-layout records, maps only with ``str`` keys in sorted order;
* no ext types, no trailing bytes.

`decode` is strict: after parsing it re-encodes the value and compares, so any
non-canonical form (a padded integer, unsorted map keys, a ``str`` used for bytes…)
is rejected with `EncodingError`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack

from ledger.errors import EncodingError

# Domain tags: each kind of signed object has its own, so a signature of one kind can
# never be replayed as another. Versioned so the format can change without ambiguity.
DOMAIN_TX = b"cxl/tx/v1"
DOMAIN_PREPREPARE = b"cxl/preprepare/v1"
DOMAIN_PREPARE = b"cxl/prepare/v1"
DOMAIN_COMMIT = b"cxl/commit/v1"
DOMAIN_VIEW_CHANGE = b"cxl/viewchange/v1"
DOMAIN_NEW_VIEW = b"cxl/newview/v1"
DOMAIN_P2P = b"cxl/p2p/v1"
DOMAIN_ATTESTATION = b"cxl/attestation/v1"
DOMAIN_RESOLUTION = b"cxl/resolution/v1"

DEFAULT_MAX_DECODE = 16 * 1024 * 1024
MAX_DEPTH = 32


_SCALARS = (bytes, str, int, bool, type(None))


def _canon(value: Any, depth: int = 0) -> Any:
    """Validate types and sort map keys in one pass; returns what msgpack should pack.

    Text validity and integer range are left to the packer, which raises on both
    (`encode` turns that into EncodingError): checking them here would walk every
    value twice on the hottest path of the node.
    """
    t = type(value)
    if t in _SCALARS:
        return value
    if depth >= MAX_DEPTH:
        raise EncodingError("value nested too deeply")
    if t is dict:
        for key in value:
            if type(key) is not str:
                raise EncodingError(f"map keys must be strings, got {type(key).__name__}")
        return {k: _canon(value[k], depth + 1) for k in sorted(value)}
    if t is list or t is tuple:
        return [_canon(item, depth + 1) for item in value]
    # subclasses (IntEnum, str enums, bytes subclasses …) encode as their base type
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, dict):
        return _canon(dict(value), depth)
    if isinstance(value, (list, tuple)):
        return _canon(list(value), depth)
    raise EncodingError(f"type {t.__name__} has no canonical encoding")


def encode(value: Any) -> bytes:
    """Canonical bytes of `value` (ints, bytes, str, bool, None, lists, str-keyed maps)."""
    canonical = _canon(value)
    try:
        return msgpack.packb(canonical, use_bin_type=True)
    except UnicodeEncodeError:
        raise EncodingError("text is not valid Unicode (lone surrogate)") from None
    except OverflowError:
        raise EncodingError("integer out of range (-2**63 .. 2**64-1)") from None


def decode(data: bytes, *, max_size: int = DEFAULT_MAX_DECODE) -> Any:
    """Parse canonical bytes; reject anything oversize, trailing, ill-typed or non-canonical."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise EncodingError("expected bytes")
    data = bytes(data)
    if len(data) > max_size:
        raise EncodingError(f"encoding is {len(data)} bytes, above the limit of {max_size}")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_bin_len=max_size,
            max_str_len=max_size,
            max_array_len=max_size,
            max_map_len=max_size,
            max_ext_len=0,
        )
    except msgpack.ExtraData as exc:
        raise EncodingError("trailing bytes after the encoded value") from exc
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise EncodingError(f"malformed msgpack: {exc}") from exc
    if isinstance(value, float):
        raise EncodingError("floats are not allowed")
    try:
        again = encode(value)
    except EncodingError:
        raise
    if again != data:
        raise EncodingError("non-canonical encoding")
    return value


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def signing_bytes(domain: bytes, chain_id: str, payload: Any) -> bytes:
    """The exact bytes a signature covers: domain tag, chain id, canonical payload.

    Layout: ``domain || 0x00 || utf8(chain_id) || 0x00 || encode(payload)``. Neither the
    domain nor a chain id may contain a NUL byte, so the split is unambiguous.
    """
    if b"\x00" in domain or "\x00" in chain_id:
        raise EncodingError("domain and chain id may not contain NUL")
    try:
        chain = chain_id.encode()
    except UnicodeEncodeError:
        raise EncodingError("chain id is not valid Unicode") from None
    return domain + b"\x00" + chain + b"\x00" + encode(payload)


def expect(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    """Type check for decoded fields; bool is never accepted as int."""
    if isinstance(value, bool) and kind is int:
        raise EncodingError(f"{what}: expected int, got bool")
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise EncodingError(f"{what}: expected {name}, got {type(value).__name__}")
    return value


def expect_array(value: Any, length: int, what: str) -> list:
    expect(value, list, what)
    if len(value) != length:
        raise EncodingError(f"{what}: expected {length} fields, got {len(value)}")
    return value


def expect_uint(value: Any, what: str) -> int:
    expect(value, int, what)
    if value < 0:
        raise EncodingError(f"{what}: must not be negative")
    return value


def expect_bytes(value: Any, size: int, what: str) -> bytes:
    """A bin field of exactly `size` bytes (hashes, keys, signatures)."""
    expect(value, bytes, what)
    if len(value) != size:
        raise EncodingError(f"{what}: expected {size} bytes, got {len(value)}")
    return value
