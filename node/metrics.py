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

    def render(self) -> bytes:
        return generate_latest(self.registry)
