"""Tunable limits of the p2p transport. Defaults suit a handful of validators on a LAN/WAN."""

from __future__ import annotations

from dataclasses import dataclass

from p2p.wire import MAX_TXS_PER_FRAME


@dataclass(frozen=True, slots=True)
class Limits:
    # Frames
    max_frame_bytes: int = 4 * 1024 * 1024  # receive limit per WebSocket message; all nodes alike
    # Outbound queue per peer (never blocks the caller; drops oldest gossip first)
    max_queue_frames: int = 1024
    max_queue_bytes: int = 32 * 1024 * 1024
    # Transaction gossip batching and duplicate suppression
    tx_batch_delay_ms: int = 5
    max_batch_txs: int = 256  # at most wire.MAX_TXS_PER_FRAME
    max_batch_bytes: int = 1024 * 1024
    seen_capacity: int = 100_000  # hashes remembered, per direction
    # Block sync
    max_blocks_per_request: int = 64
    fetch_timeout_s: float = 5.0
    # Sessions
    handshake_timeout_s: float = 5.0
    handshake_window_ms: int = 30_000  # allowed clock skew of a hello/welcome
    clock_warn_ms: int = 1_000  # log a warning for a peer whose clock is further off than this
    max_pending_handshakes: int = 16  # WebSocket handshakes in progress at once (each may buffer one frame)
    # TCP connections not yet authenticated (p2p.admission): caps, closed at once above them;
    # each must finish the handshake within handshake_timeout_s + close_timeout_s of accept
    max_unauthenticated: int = 64
    max_unauthenticated_per_host: int = 8
    # A partition that heals must be noticed within about a second: a TCP connect that
    # hangs (its SYN lost) is abandoned after connect_timeout_s and retried after at most
    # backoff_cap_s (a handful of validators: redialling often costs nothing). The rest
    # of the handshake (TLS, upgrade, challenge) has handshake_timeout_s on top, so a
    # slow or lossy WAN link still gets through.
    connect_timeout_s: float = 1.0
    backoff_base_s: float = 0.1
    backoff_cap_s: float = 0.5
    # Liveness of our outbound session: a ping every ping_interval_s; the session is
    # closed when nothing came back from the peer for dead_after_s (its pongs, or any of
    # its frames on its own session to us: on a lossy link one TCP stream often stalls
    # for seconds in retransmission backoff while the other still flows, and cutting a
    # slow session only replaces it with a handshake over the same bad link).
    # TCP_USER_TIMEOUT closes a connection whose sent data stays unacknowledged for
    # user_timeout_s (the kernel would otherwise retransmit for ~15 minutes): the backstop
    # for a session that is dead one way only, far above the retransmission backoff of
    # a lossy link (five losses in a row at 500 ms RTT take ~20 s). The server side pings a
    # session silent for heartbeat_s and closes it without a pong within half of that:
    # healthy clients ping every ping_interval_s, so it fires only on dead ones.
    ping_interval_s: float = 1.0
    dead_after_s: float = 5.0
    user_timeout_s: float = 30.0
    heartbeat_s: float = 20.0
    close_timeout_s: float = 1.0
    # A peer that closes our session as "replaced by a newer session" (4003) has a session
    # from another process with OUR key (an HA mistake): redial it only this often, so the
    # two processes do not take the session from each other hundreds of times a minute.
    duplicate_backoff_s: float = 30.0
    # Full-node sessions (keys admitted by `PeerNetwork.admission`, not validators): at most
    # this many at once (a new one over the cap is refused at the handshake), and each may
    # ask for blocks at most `full_node_requests_per_s` times a second on average with
    # bursts of `full_node_request_burst`; a request above that waits for its turn (the
    # session's reader is held, so a flood throttles only that session).
    max_full_node_sessions: int = 32
    full_node_requests_per_s: float = 20.0
    full_node_request_burst: int = 40

    def __post_init__(self) -> None:
        if not 1 <= self.max_batch_txs <= MAX_TXS_PER_FRAME:
            raise ValueError(f"max_batch_txs must be in 1..{MAX_TXS_PER_FRAME}")
        if self.max_batch_bytes >= self.max_frame_bytes:
            raise ValueError("max_batch_bytes must be below max_frame_bytes")
        if self.max_blocks_per_request < 1 or self.seen_capacity < 1:
            raise ValueError("limits must be positive")
        if not 1 <= self.max_unauthenticated_per_host <= self.max_unauthenticated:
            raise ValueError("need 1 <= max_unauthenticated_per_host <= max_unauthenticated")
        if self.max_full_node_sessions < 0 or self.full_node_requests_per_s <= 0 or self.full_node_request_burst < 1:
            raise ValueError("full-node limits: max_full_node_sessions >= 0, full_node_requests_per_s > 0, "
                             "full_node_request_burst >= 1")
        if self.handshake_timeout_s <= 0:
            raise ValueError("handshake_timeout_s must be positive")
