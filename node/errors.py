"""The node's error tree: one root, typed subclasses, each with a stable code and the
HTTP status the client API answers with.

A `NodeError` raised while handling a request is always the client's or a peer's
fault (or a full mempool); the API turns it into ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations


class NodeError(Exception):
    """Root of every error raised by the node package."""

    code = "node_error"
    status = 500

    def __init__(self, message: str, code: str | None = None, status: int | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code

    def to_json(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


class ConfigError(NodeError):
    """A node home or config file that cannot be used; the message names the field."""

    code = "bad_config"


class BadRequest(NodeError):
    code = "bad_request"
    status = 400


class NotFound(NodeError):
    code = "not_found"
    status = 404


class TxAdmissionError(NodeError):
    """A transaction the mempool refused. `status` follows the reason:

    400 undecodable, 401 bad signature, 403 unknown sender, 409 nonce already used or
    taken by another pending transaction, 413 too large, 422 otherwise rejected."""

    code = "tx_rejected"
    status = 422


class MempoolFull(NodeError):
    """Back-pressure: 429 when this sender has too many pending transactions (retry
    later), 503 when the whole mempool is full."""

    code = "mempool_full"
    status = 503
