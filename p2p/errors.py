"""The p2p error tree: one root, typed subclasses.

A *remote* error (a peer sent garbage, failed authentication, timed out) is logged and
ends that peer's session; it never propagates into the node's runner.
"""

from __future__ import annotations


class P2PError(Exception):
    """Root of every error raised by the p2p package."""

    code = "p2p_error"


class HandshakeRefused(P2PError):
    """The other side failed authentication (unknown key, bad signature, stale, replayed)."""

    code = "handshake_refused"


class ProtocolViolation(P2PError):
    """A peer sent a frame that is malformed, oversized or not allowed in this direction."""

    code = "protocol_violation"


class PeerUnavailable(P2PError):
    """No usable session to the requested peer, or it did not answer in time."""

    code = "peer_unavailable"
