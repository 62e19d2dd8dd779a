"""Access details sealed to a tenant's key (client side; the chain only stores the bytes).

A tenant's Ed25519 key is converted to Curve25519 and the provider seals with an
anonymous `SealedBox`: only the holder of the tenant's signing seed can open it. The
chain checks the ciphertext is bytes of a plausible size (`leases.check_sealed`); it
cannot check that it opens, so `open_access` reports a clear error when it does not.
"""

from __future__ import annotations

import nacl.exceptions
import nacl.public
import nacl.signing

from ledger.errors import LedgerError


class SealingError(LedgerError):
    """Sealed access that cannot be opened with this key, or a key that cannot seal."""

    code = "sealed_access_unreadable"


def seal_access(tenant_ed25519_public_key: bytes, plaintext: bytes) -> bytes:
    """Seal `plaintext` to the tenant's Ed25519 public key (as carried in the lease)."""
    if not isinstance(plaintext, (bytes, bytearray)):
        raise SealingError("access details must be bytes", "bad_sealed_access")
    try:
        curve = nacl.signing.VerifyKey(bytes(tenant_ed25519_public_key)).to_curve25519_public_key()
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        raise SealingError(f"not an Ed25519 public key: {exc}", "bad_key") from None
    return bytes(nacl.public.SealedBox(curve).encrypt(bytes(plaintext)))


def open_access(tenant_signer_seed: bytes, ciphertext: bytes) -> bytes:
    """Open sealed access details with the tenant's Ed25519 seed (32 bytes)."""
    if not isinstance(ciphertext, (bytes, bytearray)):
        raise SealingError("sealed access must be bytes", "bad_sealed_access")
    try:
        private = nacl.signing.SigningKey(bytes(tenant_signer_seed)).to_curve25519_private_key()
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        raise SealingError(f"not an Ed25519 seed: {exc}", "bad_key") from None
    try:
        return bytes(nacl.public.SealedBox(private).decrypt(bytes(ciphertext)))
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise SealingError(
            "the sealed access details do not open with this key: they were sealed to another key or are corrupt"
        ) from None
