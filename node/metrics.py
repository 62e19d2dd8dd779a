"""Prometheus metrics of one node, in its own CollectorRegistry (several nodes may share
a process in tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class NodeMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.height = Gauge("cxl_height", "Height of the last committed block", registry=r)
        self.view = Gauge("cxl_view", "Current consensus view", registry=r)
        self.view_changes = Gauge("cxl_view_changes", "View changes seen since start", registry=r)
        self.mempool_txs = Gauge("cxl_mempool_txs", "Transactions in the mempool", registry=r)
        self.mempool_bytes = Gauge("cxl_mempool_bytes", "Bytes of transactions in the mempool", registry=r)
        self.txs_committed = Counter("cxl_txs_committed", "Transactions committed", registry=r)
        self.txs_rejected = Counter("cxl_txs_rejected", "Transactions refused at admission", ["code"], registry=r)
        self.blocks_committed = Counter("cxl_blocks_committed", "Blocks committed", registry=r)
        self.commit_latency = Histogram(
            "cxl_commit_latency_seconds", "From admission to commit, per transaction admitted here",
            buckets=LATENCY_BUCKETS, registry=r)
        self.peers_connected = Gauge("cxl_peers_connected", "Peers currently connected", registry=r)
        self.evidence = Gauge("cxl_evidence", "Evidence records seen", registry=r)
        self.clock_skew = Gauge("cxl_clock_skew_ms", "This node's clock minus the median of its connected "
                                "peers' clocks (handshake samples); NaN when none is measured", registry=r)
        self.peer_clock_offset = Gauge("cxl_peer_clock_offset_ms", "A peer's clock minus this node's, measured "
                                       "at the last handshake", ["peer"], registry=r)
        self.blocks_refused_for_time = Gauge("cxl_blocks_refused_for_time", "Blocks refused as too far ahead "
                                             "of this node's clock", registry=r)

    def set_clock(self, clock: dict, peers: list[dict], refused: int) -> None:
        skew = clock.get("skew_ms")
        self.clock_skew.set(float("nan") if skew is None else skew)
        self.peer_clock_offset.clear()
        for p in peers:
            if p.get("clock_offset_ms") is not None:
                self.peer_clock_offset.labels(p["key"][:16]).set(p["clock_offset_ms"])
        self.blocks_refused_for_time.set(refused)

    def render(self) -> bytes:
        return generate_latest(self.registry)
