"""Transaction envelope: canonical layout, signature, hash and stateless checks.

Wire form of a signed transaction::

    [[chain_id: str, sender: bin32, nonce: uint, type: str, payload: map, expiry: uint], signature: bin64]

The signature covers ``signing_bytes(DOMAIN_TX, chain_id, tx_array)``; the hash of a
transaction is SHA-256 of its whole signed encoding. `expiry` 0 means "never"; otherwise
the transaction is invalid in any block at a height above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger.crypto import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, Signer, address_of, verify
from ledger.encoding import DOMAIN_TX, decode, encode, expect, expect_array, sha256, signing_bytes
from ledger.errors import EncodingError, TxRejected

DEFAULT_MAX_TX_BYTES = 64 * 1024
MAX_TYPE_LEN = 32


@dataclass(frozen=True, slots=True)
class Tx:
    chain_id: str
    sender: bytes
    nonce: int
    type: str
    payload: dict
    expiry: int = 0

    def to_wire(self) -> list:
        return [self.chain_id, self.sender, self.nonce, self.type, self.payload, self.expiry]

    def signing_bytes(self) -> bytes:
        return signing_bytes(DOMAIN_TX, self.chain_id, self.to_wire())

    @property
    def sender_address(self) -> str:
        return address_of(self.sender)

    def sign(self, signer: Signer) -> "SignedTx":
        if signer.public_key != self.sender:
            raise TxRejected("signing key does not match the transaction's sender", "wrong_signer")
        signature = signer.sign(self.signing_bytes())
        raw = encode([self.to_wire(), signature])
        return SignedTx(self, signature, raw, sha256(raw))


@dataclass(frozen=True, slots=True)
class SignedTx:
    tx: Tx
    signature: bytes
    raw: bytes  # the canonical signed encoding, as carried in blocks
    hash: bytes

    def signed_message(self) -> bytes:
        """The bytes the signature covers, cut from `raw` rather than re-encoded.

        `raw` is canonical (made by `sign` or checked by `decode_tx`), so it is
        ``0x92 || encode(tx_array) || 0xc4 0x40 || signature`` and the slice in between
        is exactly ``encode(tx_array)``. Equal to `tx.signing_bytes()`, at a fraction of
        the cost on the admission path.
        """
        return tx_signing_prefix(self.tx.chain_id) + self.raw[1:-SIGNED_TAIL]

    def verify_signature(self) -> bool:
        return verify(self.tx.sender, self.signed_message(), self.signature)


SIGNED_TAIL = 2 + SIGNATURE_SIZE  # msgpack bin8 header (0xc4 0x40) + the signature
_prefixes: dict[str, bytes] = {}


def tx_signing_prefix(chain_id: str) -> bytes:
    """`signing_bytes(DOMAIN_TX, chain_id, x)` without the trailing `encode(x)`."""
    prefix = _prefixes.get(chain_id)
    if prefix is None:
        if len(_prefixes) > 64:  # a node sees one chain id; don't let garbage grow this
            _prefixes.clear()
        prefix = _prefixes[chain_id] = signing_bytes(DOMAIN_TX, chain_id, None)[:-1]  # encode(None): 1 byte
    return prefix


def _tx_from_wire(w: Any) -> Tx:
    expect_array(w, 6, "tx")
    sender = expect(w[1], bytes, "tx.sender")
    if len(sender) != PUBLIC_KEY_SIZE:
        raise EncodingError("tx.sender: expected a 32-byte public key")
    nonce = expect(w[2], int, "tx.nonce")
    expiry = expect(w[5], int, "tx.expiry")
    if nonce < 0 or expiry < 0:
        raise EncodingError("tx.nonce and tx.expiry must not be negative")
    kind = expect(w[3], str, "tx.type")
    if not 0 < len(kind) <= MAX_TYPE_LEN:
        raise EncodingError("tx.type: empty or too long")
    return Tx(
        chain_id=expect(w[0], str, "tx.chain_id"),
        sender=sender,
        nonce=nonce,
        type=kind,
        payload=expect(w[4], dict, "tx.payload"),
        expiry=expiry,
    )


def decode_tx(raw: bytes, max_size: int = DEFAULT_MAX_TX_BYTES) -> SignedTx:
    """Strictly decode a signed transaction. Raises EncodingError (never anything else)."""
    if len(raw) > max_size:
        raise EncodingError(f"transaction is {len(raw)} bytes, above the limit of {max_size}")
    w = decode(raw, max_size=max_size)
    expect_array(w, 2, "signed tx")
    signature = expect(w[1], bytes, "tx.signature")
    if len(signature) != SIGNATURE_SIZE:
        raise EncodingError("tx.signature: expected 64 bytes")
    return SignedTx(_tx_from_wire(w[0]), signature, bytes(raw), sha256(raw))


def check_stateless(stx: SignedTx, chain_id: str) -> None:
    """Admission checks that need no state: chain id and signature."""
    if stx.tx.chain_id != chain_id:
        raise TxRejected(
            f"transaction is for chain {stx.tx.chain_id!r}, this node runs {chain_id!r}", "wrong_chain"
        )
    if not stx.verify_signature():
        raise TxRejected("signature does not verify against the sender's key", "bad_signature")


def make_tx(signer: Signer, chain_id: str, nonce: int, kind: str, payload: dict, expiry: int = 0) -> SignedTx:
    """Build and sign a transaction (client side)."""
    return Tx(chain_id, signer.public_key, nonce, kind, payload, expiry).sign(signer)
