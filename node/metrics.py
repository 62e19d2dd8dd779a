"""Prometheus metrics of one node, in its own CollectorRegistry (several nodes may share
a process in tests), and the listener that serves them apart from the client API.

Names follow the Prometheus conventions: counters end in ``_total`` (prometheus_client
adds the suffix to a Counter's name), units in the name (``_seconds``, ``_bytes``), one
``cxl_build_info`` series carrying the version as labels, and the standard ``process_*``
and ``python_info`` series of prometheus_client's collectors.

The metrics listener (config `metrics_host` / `metrics_port`, default 127.0.0.1 and the
API port + 100) answers ``GET /metrics``, ``GET /health`` and the admin endpoint
``GET|POST /admin/log-level``; the POST is taken only from a loopback address, so a
listener opened to a scraper elsewhere still cannot change the node.
"""

from __future__ import annotations

import ipaddress
import json
import platform
from typing import Callable

from aiohttp import web
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info,
                               PlatformCollector, ProcessCollector, disable_created_metrics, generate_latest)

# the *_created series (one per counter, the process start time) only add noise here
disable_created_metrics()

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class NodeMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.height = Gauge("cxl_height", "Height of the last committed block", registry=r)
        self.view = Gauge("cxl_view", "Current consensus view", registry=r)
        # exposed as cxl_view_changes_total (a count since start, so a counter)
        self.view_changes = Counter("cxl_view_changes", "View changes seen since start", registry=r)
        self.mempool_txs = Gauge("cxl_mempool_txs", "Transactions in the mempool", registry=r)
        self.mempool_bytes = Gauge("cxl_mempool_bytes", "Bytes of transactions in the mempool", registry=r)
        self.txs_committed = Counter("cxl_txs_committed", "Transactions committed", registry=r)
        self.txs_rejected = Counter("cxl_txs_rejected", "Transactions refused at admission", ["code"], registry=r)
        self.txs_failed = Counter("cxl_txs_failed", "Transactions committed with a failed receipt, by error code",
                                  ["code"], registry=r)
        self.blocks_committed = Counter("cxl_blocks_committed", "Blocks committed", registry=r)
        self.commit_latency = Histogram(
            "cxl_commit_latency_seconds", "From admission to commit, per transaction admitted here",
            buckets=LATENCY_BUCKETS, registry=r)
        self.peers_connected = Gauge("cxl_peers_connected", "Validators with a live session to this node",
                                     registry=r)
        self.catching_up = Gauge("cxl_catching_up", "1 while applying blocks fetched from peers", registry=r)
        self.duplicate_key = Gauge("cxl_duplicate_key", "1 when another process runs with this node's key "
                                   "(this node has stopped signing)", registry=r)
        # exposed as cxl_evidence_total
        self.validator = Gauge("cxl_validator", "1 while this node is a validator (votes), 0 as a full node",
                               registry=r)
        self.blocks_behind = Gauge("cxl_blocks_behind", "The best peer's reported height minus this node's "
                                   "(0 before any peer answered)", registry=r)
        self.full_node_sessions = Gauge("cxl_full_node_sessions", "Full nodes with a session to this node",
                                        registry=r)
        self.evidence = Counter("cxl_evidence", "Evidence records seen (conflicting signatures)", registry=r)
        self._evidence_counted = 0
        self.build_info = Info("cxl_build", "Version of the running node", registry=r)
        self.clock_skew = Gauge("cxl_clock_skew_ms", "This node's clock minus the median of its connected "
                                "peers' clocks (handshake samples); NaN when none is measured", registry=r)
        self.peer_clock_offset = Gauge("cxl_peer_clock_offset_ms", "A peer's clock minus this node's, measured "
                                       "at the last handshake", ["peer"], registry=r)
        # exposed as cxl_blocks_refused_for_time_total
        self.blocks_refused_for_time = Counter("cxl_blocks_refused_for_time", "Blocks refused as too far ahead "
                                               "of this node's clock", registry=r)
        self._refused_counted = 0
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)

    def set_clock(self, clock: dict, peers: list[dict], refused: int) -> None:
        skew = clock.get("skew_ms")
        self.clock_skew.set(float("nan") if skew is None else skew)
        self.peer_clock_offset.clear()
        for p in peers:
            if p.get("clock_offset_ms") is not None:
                self.peer_clock_offset.labels(p["key"][:16]).set(p["clock_offset_ms"])
        if refused > self._refused_counted:  # a counter fed from the runner's running total
            self.blocks_refused_for_time.inc(refused - self._refused_counted)
            self._refused_counted = refused

    def set_build_info(self, version: str) -> None:
        self.build_info.info({"version": version, "python": platform.python_version()})

    def set_evidence(self, total: int) -> None:
        """Bring the evidence counter up to the runner's running total."""
        if total > self._evidence_counted:
            self.evidence.inc(total - self._evidence_counted)
            self._evidence_counted = total

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def make_metrics_app(*, render: Callable[[], bytes], health: Callable[[], dict],
                     set_level: Callable[[str], str], get_level: Callable[[], str]) -> web.Application:
    async def get_metrics(request: web.Request) -> web.Response:
        return web.Response(body=render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def get_health(request: web.Request) -> web.Response:
        verdict = health()
        return web.json_response(verdict, status=200 if verdict["status"] == "ready" else 503)

    async def get_level_handler(request: web.Request) -> web.Response:
        return web.json_response({"level": get_level()})

    async def post_level(request: web.Request) -> web.Response:
        if not _loopback(request.remote):
            return _error("forbidden", "the admin endpoint answers loopback addresses only", 403)
        try:
            body = json.loads(await request.read())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error("bad_json", 'body must be JSON: {"level": "debug"|"info"|"warning"|"error"}', 400)
        level = body.get("level") if isinstance(body, dict) else None
        try:
            return web.json_response({"level": set_level(level)})
        except Exception as exc:  # node.errors.ConfigError: an unknown level
            return _error(getattr(exc, "code", "bad_log_level"), getattr(exc, "message", str(exc)), 400)

    app = web.Application(client_max_size=4096)
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/health", get_health)
    app.router.add_get("/admin/log-level", get_level_handler)
    app.router.add_post("/admin/log-level", post_level)
    return app


def _error(code: str, message: str, status: int) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


async def start_metrics_listener(host: str, port: int, **handlers) -> tuple[web.AppRunner, int]:
    """Serve the metrics app on host:port (0: a free port); returns the runner and the port."""
    runner = web.AppRunner(make_metrics_app(**handlers), access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, runner.addresses[0][1]  # the real port when 0 was asked
