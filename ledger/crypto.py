"""Ed25519 keys, signatures and addresses (PyNaCl)."""

from __future__ import annotations

import re

import nacl.exceptions
import nacl.signing

from ledger.encoding import sha256
from ledger.errors import SignatureError

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
ADDRESS_PREFIX = "cx"
# Exactly "cx" + 40 lower-case ASCII hex digits. A regular expression and never
# `bytes.fromhex`, which skips whitespace ("cx" + 40 spaces decoded to b"" and passed),
# and never `str.isdigit`/`int`, which take Unicode digits. `[0-9a-f]` is ASCII only.
_ADDRESS = re.compile(ADDRESS_PREFIX + r"[0-9a-f]{40}")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


def address_of(public_key: bytes) -> str:
    """An account address: ``cx`` + hex of the first 20 bytes of a domain-tagged hash."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise SignatureError("public key must be 32 bytes")
    return ADDRESS_PREFIX + sha256(b"cxl/address/v1" + public_key)[:20].hex()


def is_address(text: str) -> bool:
    """True only for ``cx`` + 40 lower-case hex digits: no whitespace, upper case or other digits.
    Every address check (ledger, market payloads, genesis, API, CLI) goes through this."""
    return isinstance(text, str) and _ADDRESS.fullmatch(text) is not None


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
