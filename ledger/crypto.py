"""Ed25519 keys, signatures and addresses (PyNaCl)."""

from __future__ import annotations

import nacl.exceptions
import nacl.signing

from ledger.encoding import sha256
from ledger.errors import SignatureError

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
ADDRESS_PREFIX = "cx"


def address_of(public_key: bytes) -> str:
    """An account address: ``cx`` + hex of the first 20 bytes of a domain-tagged hash."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise SignatureError("public key must be 32 bytes")
    return ADDRESS_PREFIX + sha256(b"cxl/address/v1" + public_key)[:20].hex()


def is_address(text: str) -> bool:
    if not isinstance(text, str) or len(text) != 42 or not text.startswith(ADDRESS_PREFIX):
        return False
    try:
        bytes.fromhex(text[2:])
    except ValueError:
        return False
    return text == text.lower()


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
