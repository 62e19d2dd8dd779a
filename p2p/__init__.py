"""Peer-to-peer transport between validators: authenticated persistent WebSocket sessions,
batched transaction gossip, consensus delivery and block sync. See `p2p.wire` for the
wire format and `p2p.network.PeerNetwork` for the node-facing API."""

from p2p.config import Limits
from p2p.errors import HandshakeRefused, P2PError, PeerUnavailable, ProtocolViolation
from p2p.network import Inbox, PeerNetwork
from p2p.tls import TLSConfig

__all__ = [
    "HandshakeRefused",
    "Inbox",
    "Limits",
    "P2PError",
    "PeerNetwork",
    "PeerUnavailable",
    "ProtocolViolation",
    "TLSConfig",
]
