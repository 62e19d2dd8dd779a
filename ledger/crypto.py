"""Ed25519 keys, signatures and addresses (PyNaCl)."""

from __future__ import annotations

import functools
import re

import bech32

import nacl.bindings
import nacl.exceptions
import nacl.signing

from ledger.encoding import sha256
from ledger.errors import SignatureError

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
# An address is bech32 (BIP-173) with the human-readable part "cx": "cx1" + 32 data
# characters (the 20-byte account id) + 6 checksum characters, 41 in all, lower case only.
# The checksum catches any single mistyped character and any swap of two neighbours, so a
# typo is refused instead of crediting a dead account. docs/protocol.md §2 has the exact rule.
ADDRESS_HRP = "cx"
ADDRESS_LENGTH = 41
ADDRESS_PAYLOAD_SIZE = 20
# The form used before checksums: "cx" + 40 lower-case hex digits. Refused everywhere with
# the checksummed form in the message (never converted silently: it has no checksum).
_OLD_ADDRESS = re.compile(r"cx[0-9a-f]{40}")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


def address_from_payload(payload: bytes) -> str:
    """The bech32 address of a 20-byte account id."""
    if len(payload) != ADDRESS_PAYLOAD_SIZE:
        raise ValueError(f"an account id is {ADDRESS_PAYLOAD_SIZE} bytes")
    return bech32.bech32_encode(ADDRESS_HRP, bech32.convertbits(payload, 8, 5, True))


def address_of(public_key: bytes) -> str:
    """An account address: bech32 ``cx1…`` of the first 20 bytes of a domain-tagged hash."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise SignatureError("public key must be 32 bytes")
    return address_from_payload(sha256(b"cxl/address/v1" + public_key)[:ADDRESS_PAYLOAD_SIZE])


def convert_old_address(text: str) -> str:
    """The checksummed form of an old ``cx`` + 40 hex address (ValueError for anything else)."""
    if not isinstance(text, str) or _OLD_ADDRESS.fullmatch(text) is None:
        raise ValueError("not an old-form address (cx + 40 lower-case hex digits)")
    return address_from_payload(bytes.fromhex(text[2:]))


@functools.lru_cache(maxsize=65536)
def _problem(text: str) -> tuple[str, str] | None:
    if _OLD_ADDRESS.fullmatch(text):
        return ("old_address_form",
                f"{text} is an old-form address without a checksum; its checksummed form is "
                f"{convert_old_address(text)} (confirm it with the account's owner: the old form "
                f"could not catch typos)")
    if any(c.isspace() for c in text):
        return ("bad_address", "an address has no spaces or line breaks")
    if text.lower() != text:
        return ("bad_address", "an address is lower case (cx1...)")
    if not text.startswith(ADDRESS_HRP + "1"):
        return ("bad_address", f"an address starts with {ADDRESS_HRP}1")
    if len(text) != ADDRESS_LENGTH:
        return ("bad_address", f"an address has {ADDRESS_LENGTH} characters, this one has {len(text)}")
    for i, c in enumerate(text[3:], start=4):
        if c not in bech32.CHARSET:
            return ("bad_address", f"character {i} ({c!r}) cannot appear in an address "
                                   f"(the alphabet has no 1, b, i, o)")
    hrp, data = bech32.bech32_decode(text)
    if hrp != ADDRESS_HRP:
        return ("bad_address", "the address checksum does not match: a character is mistyped")
    payload = bech32.convertbits(data, 5, 8, False)
    if payload is None or len(payload) != ADDRESS_PAYLOAD_SIZE \
            or address_from_payload(bytes(payload)) != text:
        return ("bad_address", "the address does not encode a 20-byte account id")
    return None


def address_problem(text) -> tuple[str, str] | None:
    """Why `text` is not an address, as (code, message), or None when it is one. Codes:
    ``old_address_form`` (the message gives the checksummed form) and ``bad_address``."""
    if not isinstance(text, str):
        return ("bad_address", "an address is text (cx1...)")
    if len(text) > 2 * ADDRESS_LENGTH:  # never cache arbitrarily long input
        return ("bad_address", f"an address has {ADDRESS_LENGTH} characters, this one has {len(text)}")
    return _problem(text)


def is_address(text) -> bool:
    """True only for a checksummed, lower-case ``cx1…`` address. Every address check
    (ledger, market payloads, genesis, API, CLI) goes through this or `address_problem`."""
    return address_problem(text) is None


def address_payload(text: str) -> bytes:
    """The 20-byte account id inside an address (ValueError if it is not one)."""
    problem = address_problem(text)
    if problem is not None:
        raise ValueError(problem[1])
    return bytes(bech32.convertbits(bech32.bech32_decode(text)[1], 5, 8, False))


def parse_hex(text: str, size: int | None = None) -> bytes:
    """Strict hex: ASCII hex digits only (either case), even length, `size` bytes if given.
    Raises ValueError otherwise; unlike `bytes.fromhex` it skips nothing."""
    if not isinstance(text, str) or _HEX.fullmatch(text) is None:
        raise ValueError("expected hex digits (0-9, a-f) only, an even number of them")
    if size is not None and len(text) != 2 * size:
        raise ValueError(f"expected {size} bytes ({2 * size} hex digits), got {len(text) // 2}")
    return bytes.fromhex(text)


def account_address(text: str) -> str | None:
    """The account named by `text`: an address as it is, or the address of a public key
    given as 64 hex digits; None for anything else (the caller says what was wrong)."""
    if is_address(text):
        return text
    try:
        return address_of(parse_hex(text, PUBLIC_KEY_SIZE))
    except ValueError:
        return None


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when `signature` is a valid Ed25519 signature of `message` by `public_key`."""
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
        return True
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False


def is_valid_point(public_key: bytes) -> bool:
    """True when `public_key` is a canonical Ed25519 point of large order (libsodium's
    crypto_core_ed25519_is_valid_point): a key some private key signs for. The all-zero
    key and other small-order points are not."""
    if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_SIZE:
        return False
    return bool(nacl.bindings.crypto_core_ed25519_is_valid_point(public_key))


class Signer:
    """A private key held in memory. Never serialised except by the keystore."""

    __slots__ = ("seed", "_key", "public_key", "address")

    def __init__(self, seed: bytes):
        if len(seed) != 32:
            raise SignatureError("an Ed25519 seed is 32 bytes")
        self.seed = bytes(seed)
        self._key = nacl.signing.SigningKey(self.seed)
        self.public_key = bytes(self._key.verify_key)
        self.address = address_of(self.public_key)

    @classmethod
    def generate(cls) -> "Signer":
        return cls(bytes(nacl.signing.SigningKey.generate()))

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message).signature

    def __repr__(self) -> str:  # never print a seed
        return f"Signer(address={self.address})"
