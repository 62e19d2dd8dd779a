"""The ledger's error tree: one root, typed subclasses, each with a stable code.

A `RemoteError`-style failure in cxl is always a value someone else sent us (a
transaction, a block, a message): callers reject it, they never crash on it.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every error raised by the ledger package."""

    code = "ledger_error"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code


class EncodingError(LedgerError):
    """Bytes that are not a canonical encoding of the expected shape."""

    code = "bad_encoding"


class SignatureError(LedgerError):
    code = "bad_signature"


class TxRejected(LedgerError):
    """A transaction refused at admission or failed at execution; `code` is stable."""

    code = "tx_rejected"


class BlockInvalid(LedgerError):
    """A block (or certificate) that does not verify; `code` says which check failed."""

    code = "block_invalid"


class StoreError(LedgerError):
    code = "store_error"


class KeystoreError(LedgerError):
    code = "keystore_error"


class GenesisError(LedgerError):
    """A genesis file that does not validate; the message names the field."""

    code = "bad_genesis"
