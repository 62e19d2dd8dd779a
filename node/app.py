"""Composition root: config, store, chain, mempool, consensus replica, runner, transport
and the client API of one validator node.

Programmatic use (tests, scripts)::

    node = Node(home)                  # HOME laid out by node.config.init_home
    await node.start()                 # opens LevelDB, starts runner, transport, API
    ... node.api_url ...
    await node.stop()                  # stops everything, closes the store

`run_node(home)` does the same until SIGTERM/SIGINT (what `python -m node HOME` and
`cxl node start` run).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from aiohttp import web

from ledger import accounts
from ledger import nodes as node_registry
from ledger.chain import Chain
from ledger.crypto import Signer
from ledger.errors import LedgerError
from ledger.store.leveldb import LevelDBStore
from ledger.tx import SignedTx

from node import config as cfgmod
from node import views
from node.config import NodeConfig, NodeHome
from node.errors import ConfigError, NodeError
from node.logutil import limit_repeats
from node.mempool import Mempool, check_raws
from node import health as healthmod
from node.logs import JsonLines, file_handler, has_file_handler, level_number, setup_stderr_logging  # noqa: F401
from node.metrics import NodeMetrics, start_metrics_listener
from node.follower import FULL, VALIDATOR
from node.runner import Runner, now_ms as runner_now_ms
from node.transport import NodeInbox, NullTransport, Transport

MAX_SERVE_BLOCKS = 100
FULL_BEHIND_BLOCKS = 3    # a full node further behind its best peer than this is "catching up"
MAX_PEER_TX_BATCHES = 64  # gossiped batches being admitted at once
STALL_CHECK_S = 1.0       # how often the node looks for a stall to log


def package_version() -> str:
    """The installed cxl version (package metadata), for status and build_info."""
    from importlib import metadata

    try:
        return metadata.version("cxl")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


# -- logging: node.logs (JSON lines with fields, rotation, runtime level) ----------------------
# JsonLines and setup_stderr_logging stay importable from here for older callers.

# -- the transport hook ---------------------------------------------------------------------

def make_transport(config: NodeConfig, inbox: NodeInbox, signer: Signer) -> Transport:
    """The peer transport for a network of more than one validator: `p2p.PeerNetwork`
    listening on p2p_host:p2p_port, with pinned mutual TLS when `p2p_tls` is set (the
    certificate derived from the node key, or the PEM files tls_cert / tls_key)."""
    try:
        from p2p import PeerNetwork, TLSConfig
    except ImportError as exc:
        raise ConfigError(f"this chain has several validators but the p2p transport is unavailable: {exc}",
                          "no_transport") from None
    tls = None
    if config.tls_cert and config.tls_key:
        try:
            tls = TLSConfig(cert_pem=Path(config.tls_cert).read_bytes(), key_pem=Path(config.tls_key).read_bytes())
        except OSError as exc:
            raise ConfigError(f"tls_cert / tls_key: cannot read {exc.filename}: {exc.strerror}") from None
    elif config.p2p_tls:
        tls = TLSConfig.for_signer(signer)
    if tls is not None and config.tls_ca:
        try:
            tls = dataclasses.replace(tls, ca_pem=Path(config.tls_ca).read_bytes())
        except OSError as exc:
            raise ConfigError(f"tls_ca: cannot read {exc.filename}: {exc.strerror}") from None
    return PeerNetwork(inbox, signer, config.p2p_host, config.p2p_port, inbox.validators(), tls=tls,
                       clock_ms=runner_now_ms)


# -- admission results --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Admission:
    hash: bytes | None
    status: str                  # "pending" | "committed" | "rejected"
    error: NodeError | None = None
    height: int | None = None


# -- the node -------------------------------------------------------------------------------

class Node:
    def __init__(
        self,
        home: str | Path,
        *,
        config: NodeConfig | None = None,
        passphrase: str | None = None,
        transport_factory: Callable[[NodeConfig, NodeInbox, Signer], Transport] | None = None,
        replica_factory=None,
        extra_routes: list | None = None,
        process_log: bool = False,
    ):
        self.home = NodeHome(Path(home))
        self.config = config or cfgmod.load_config(self.home.path)
        self.genesis_doc, self.genesis_hash = cfgmod.load_genesis(self.home.path)
        self.signer = cfgmod.load_node_key(self.home.path, passphrase)
        self.chain_id = self.genesis_doc["chain_id"]
        self._transport_factory = transport_factory
        self._replica_factory = replica_factory
        self._extra_routes = list(extra_routes or [])
        # process_log: HOME/node.log takes every "cxl.*" logger (p2p too); else only this node's
        self._process_log = process_log
        self.log = logging.getLogger(f"cxl.node.{self.signer.public_key.hex()[:8]}")
        self.metrics = NodeMetrics()
        self.store = None
        self.chain: Chain | None = None
        self.mempool: Mempool | None = None
        self.runner: Runner | None = None
        self.transport: Transport | None = None
        self.inbox: NodeInbox | None = None
        self.app: web.Application | None = None
        self._web_runner: web.AppRunner | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._log_handler: logging.Handler | None = None
        self._tasks: set[asyncio.Task] = set()
        self.api_port: int | None = None
        self.metrics_port: int | None = None
        self._metrics_runner: web.AppRunner | None = None
        self.started_ms = 0
        self.version = package_version()
        self.metrics.set_build_info(self.version)
        self._stall = healthmod.StallNotice()
        self._stall_task: asyncio.Task | None = None
        self._view_changes_at_commit = 0
        self._view_changes_counted = 0
        # full-node admission (p2p): keys accepted besides the validators, rebuilt at commits
        self._config_full_keys = {bytes.fromhex(k) for k in self.config.full_node_keys}
        self._former_validators: set[bytes] = set()
        self._admitted_full: set[bytes] = set()
        self._extra_peers: list[dict] = []

    # lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._start_log()
        try:
            try:
                self.store = LevelDBStore(self.home.data_dir)
                if self.config.state_sync:  # an empty data dir starts from a verified snapshot
                    from node import statesync
                    await statesync.bootstrap(self.store, self.genesis_doc, self.genesis_hash,
                                              statesync.parse_urls(self.config.state_sync), self.log)
                self.chain = Chain(self.store, self.genesis_doc, self.genesis_hash,
                                   state_versions_kept=self.config.state_versions_kept)
            except LedgerError as exc:  # locked by another node, or another chain's data
                raise ConfigError(str(exc), exc.code) from exc
            await self._start_inner()
        except BaseException:
            await self.stop()
            raise

    async def _start_inner(self) -> None:
        cfg = self.config
        params = self.chain.params
        self.mempool = Mempool(
            self.chain_id, self._lookup,
            max_txs=cfg.mempool_max_txs, max_bytes=cfg.mempool_max_bytes,
            max_per_sender=cfg.mempool_max_per_sender, max_nonce_ahead=cfg.mempool_max_nonce_ahead,
            max_tx_bytes=params.get("max_tx_bytes", 64 * 1024),
            max_sender_bytes=cfg.mempool_max_sender_bytes, max_org_bytes=cfg.mempool_max_org_bytes,
            gapped_ttl_s=cfg.mempool_gapped_ttl_s,
        )
        self._executor = concurrent.futures.ThreadPoolExecutor(cfg.sig_check_threads, thread_name_prefix="cxl-sig")
        self.inbox = NodeInbox(
            self.chain_id, lambda: self.chain.validator_keys, self._on_consensus, self._on_peer_txs,
            self.serve_blocks, node_key=self.signer.public_key, validators=lambda: self.chain.validators,
            on_peer_connected=lambda key: self.runner.on_peer_connected(key) if self.runner else None,
            on_duplicate_key=lambda key: self.runner.on_duplicate_key(key) if self.runner else None,
            full_node_allowed=self._full_node_allowed, head_height=lambda: self.chain.height,
        )
        self._former_validators = {bytes(v["key"]) for v in self.genesis_doc_validators()}
        self._former_validators.update(bytes(v["key"]) for _, vs in self.chain.validator_changes(0, 1 << 30)
                                       for v in vs)
        self._refresh_admission()
        validators = self.chain.validators
        if self.signer.public_key not in [v["key"] for v in validators]:
            if cfg.role == FULL:
                self.log.info("full node: key %s is not in the validator set; following the chain, signing nothing",
                              self.signer.public_key.hex(), extra={"event": "full_node",
                                                                    "node_key": self.signer.public_key.hex()})
            else:
                self.log.warning("this node's key %s is not in the validator set: it follows the chain as a full "
                                 "node and will not vote until governance adds it", self.signer.public_key.hex(),
                                 extra={"event": "not_validator", "node_key": self.signer.public_key.hex()})
        elif cfg.role == FULL:
            self.log.warning("config.json says role \"full\" but this node's key is in the validator set: it votes "
                             "(the role follows the validator set)", extra={"event": "role_is_validator"})
        if self._transport_factory is not None:
            self.transport = self._transport_factory(cfg, self.inbox, self.signer)
        elif len(validators) == 1 and self._is_validator() and not self._needs_network():
            self.transport = NullTransport()
        else:
            self.transport = make_transport(cfg, self.inbox, self.signer)
        self.transport.set_validators(validators)
        self._set_extra_peers()
        self.runner = Runner(
            self.chain, self.mempool, self.signer, self.transport,
            replica_factory=self._replica_factory, block_interval_ms=cfg.block_interval_ms,
            max_block_txs=cfg.max_block_txs, sync_interval_ms=cfg.sync_interval_ms,
            max_block_bytes=cfg.max_block_bytes, log=self.log, follow_interval_ms=cfg.follow_interval_ms,
            network_factory=self._build_network,
        )
        self.runner.transport_listeners.append(self._on_transport_changed)
        self.runner.commit_listeners.append(self._on_commit_roles)
        self.runner.commit_listeners.append(self._on_commit_metrics)
        self.runner.commit_listeners.append(self._on_commit_stall)
        self.runner.commit_listeners.append(self._on_commit_params)
        self.metrics.height.set(self.chain.height)
        from node.api import make_app, start_api  # late: api imports this module's types
        self.app = make_app(self, self._extra_routes)
        try:
            await self.transport.start()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"the p2p transport did not start: {exc}", "p2p_start") from exc
        self.runner.start()
        try:
            self._web_runner, self.api_port = await start_api(self.app, cfg.api_host, cfg.api_port)
        except OSError as exc:
            raise ConfigError(f"cannot serve the client API on {cfg.api_host}:{cfg.api_port}: {exc.strerror or exc} "
                              "(is another node using this port? set api_port in config.json)", "api_port_busy") from exc
        metrics_port = cfgmod.metrics_port_of(cfg)
        try:
            self._metrics_runner, self.metrics_port = await start_metrics_listener(
                cfg.metrics_host, metrics_port, render=self._render_metrics, health=self.health,
                set_level=self.set_log_level, get_level=self.log_level)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {cfg.metrics_host}:{metrics_port}: {exc.strerror or exc} "
                              "(is another process using this port? set metrics_port in config.json)",
                              "metrics_port_busy") from exc
        self.started_ms = time.time_ns() // 1_000_000
        self._stall_task = asyncio.get_running_loop().create_task(self._watch_stall(), name="cxl-stall-watch")
        self.log.info("node started chain=%s height=%d node_key=%s api=%s", self.chain_id, self.chain.height,
                      self.signer.public_key.hex(), self.api_url,
                      extra={"event": "started", "chain_id": self.chain_id, "height": self.chain.height,
                             "node_key": self.signer.public_key.hex(), "api": self.api_url,
                             "metrics": self.metrics_url, "version": self.version})

    async def stop(self) -> None:
        if self.runner is not None:
            self.runner.release_waiters()  # long-polls answer now instead of holding the shutdown
        if self._web_runner is not None:
            await self._web_runner.cleanup()
            self._web_runner = None
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
            self._metrics_runner = None
        if self.transport is not None:  # no more inbound traffic
            try:
                await self.transport.stop()
            except Exception:
                self.log.exception("transport stop failed")
        if self.runner is not None:
            await self.runner.stop()
        for t in list(self._tasks):
            t.cancel()
        if self._stall_task is not None:
            self._stall_task.cancel()
            self._stall_task = None
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        if self.store is not None:
            self.store.close()
            self.store = None
            self.log.info("node stopped")
        if self._log_handler is not None:
            self._log_target.removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None

    def _start_log(self) -> None:
        cfg = self.config
        self._log_target = logging.getLogger("cxl") if self._process_log else self.log
        self._log_target.setLevel(level_number(cfg.log_level))
        if has_file_handler(self._log_target, self.home.log_file):  # run_node opened it already
            return
        self._log_handler = file_handler(self.home.log_file, cfg.log_max_bytes, cfg.log_backups)
        limit_repeats(self._log_handler)
        self._log_target.addHandler(self._log_handler)

    def log_level(self) -> str:
        target = getattr(self, "_log_target", self.log)
        return logging.getLevelName(target.level).lower()

    def set_log_level(self, level: str) -> str:
        """Change the log level now (SIGHUP, the admin endpoint); a ConfigError if unknown."""
        if level not in cfgmod.LOG_LEVELS:
            raise ConfigError(f"log level must be one of {', '.join(cfgmod.LOG_LEVELS)}, got {level!r}", "bad_log_level")
        old = self.log_level()
        getattr(self, "_log_target", self.log).setLevel(level_number(level))
        if old != level:
            self.log.warning("log level changed from %s to %s", old, level,
                             extra={"event": "log_level", "old_level": old, "new_level": level})
        return level

    def reload_log_level(self) -> None:
        """SIGHUP: read log_level again from config.json and CXL_LOG_LEVEL; a config that
        no longer loads is logged and the level kept."""
        try:
            cfg = cfgmod.load_config(self.home.path)
        except ConfigError as exc:
            self.log.error("SIGHUP: config not reloaded: %s", exc.message,
                           extra={"event": "reload_failed", "code": exc.code})
            return
        self.set_log_level(cfg.log_level)

    @property
    def metrics_url(self) -> str | None:
        if self.metrics_port is None:
            return None
        return f"http://{self.config.metrics_host}:{self.metrics_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.config.api_host}:{self.api_port}"

    # full nodes: who may follow us, whom we follow, the transport of a lone validator ---------
    def genesis_doc_validators(self) -> list[dict]:
        return [{"key": bytes.fromhex(v["key"])} for v in self.genesis_doc.get("validators", [])]

    def _full_node_allowed(self, key: bytes) -> bool:
        """A non-validator key may hold a full-node session: listed by governance
        (ledger/nodes.py), in this operator's full_node_keys, a former validator (so a
        removed one keeps following), or a validator-to-be of a pending set change."""
        return bytes(key) in self._admitted_full

    def _refresh_admission(self) -> None:
        state = self.chain.state()
        admitted = set(self._config_full_keys) | self._former_validators
        admitted.update(node_registry.listed_node_keys(state))
        pending = state.get(b"validators_next")
        if pending:
            admitted.update(bytes(v["key"]) for v in pending.get("validators", []))
        self._admitted_full = admitted
        self._extra_peers = [{"key": bytes(e["key"]), "p2p": url, "org": str(e.get("org", ""))}
                             for e in node_registry.listed_nodes(state)
                             if (url := node_registry.node_p2p_url(e)) is not None]
        self._extra_peers += [cfgmod.parse_peer(p) for p in self.config.peers]

    def _needs_network(self) -> bool:
        """Does a lone validator need a p2p listener: full nodes may want to follow it."""
        return bool(self._config_full_keys) or bool(node_registry.listed_node_keys(self.chain.state()))

    def _set_extra_peers(self) -> None:
        setter = getattr(self.transport, "set_extra_peers", None)
        if setter is not None:
            setter(self._extra_peers)

    def _build_network(self) -> Transport:
        """The runner calls this when a node without a p2p transport needs one."""
        transport = make_transport(self.config, self.inbox, self.signer)
        return transport

    def _on_transport_changed(self, transport: Transport) -> None:
        self.transport = transport
        self._set_extra_peers()

    def _on_commit_roles(self, block, result, cert, admitted: dict) -> None:
        self._former_validators.update(bytes(k) for k in self.chain.validator_keys)
        self._refresh_admission()
        self._set_extra_peers()
        refresh = getattr(self.transport, "refresh_admission", None)
        if refresh is not None:
            refresh()
        if self._admitted_full - self._former_validators and isinstance(self.transport, NullTransport):
            self.runner.ensure_network("full nodes are listed now")

    # state lookups --------------------------------------------------------------------------
    def _lookup(self, address: str) -> tuple[dict | None, int]:
        state = self.chain.state()  # the member record: the mempool checks its role and org share
        return accounts.member(state, address), accounts.next_nonce(state, address)

    # transactions -----------------------------------------------------------------------------
    async def submit_txs(self, raws: list[bytes], *, gossip: bool = True) -> list[Admission]:
        """Admit raw transactions: signature checks in the thread pool, then the mempool.
        Answers every one, in order; new ones are gossiped to peers and wake the proposer."""
        loop = asyncio.get_running_loop()
        max_tx = self.mempool.max_tx_bytes
        # signature checks release the GIL: spread a big batch over the pool's threads
        parts = max(1, min(self.config.sig_check_threads, len(raws) // 64))
        step = -(-len(raws) // parts) if raws else 1
        chunks = [raws[i:i + step] for i in range(0, len(raws), step)]
        done = await asyncio.gather(*(loop.run_in_executor(self._executor, check_raws, c, self.chain_id, max_tx)
                                      for c in chunks))
        checked = [item for part in done for item in part]
        out: list[Admission] = []
        fresh: list[bytes] = []
        for item in checked:
            if isinstance(item, NodeError):
                self.metrics.txs_rejected.labels(item.code).inc()
                out.append(Admission(None, "rejected", item))
                continue
            stx: SignedTx = item
            try:
                if self.mempool.add(stx, next_height=self.chain.height + 1):
                    fresh.append(stx.raw)
                out.append(Admission(stx.hash, "pending"))
            except NodeError as exc:
                rec = self.chain.get_tx(stx.hash) if exc.code == "nonce_used" else None
                if rec is not None:  # a resubmission of a committed transaction: say so
                    out.append(Admission(stx.hash, "committed", None, rec.height))
                    continue
                self.metrics.txs_rejected.labels(exc.code).inc()
                out.append(Admission(stx.hash, "rejected", exc))
        if fresh:
            if gossip:
                self.transport.gossip_txs(fresh)
            self.runner.notify_txs_added(len(fresh))
        return out

    def _on_peer_txs(self, sender_key: bytes, raws: list[bytes]) -> None:
        if self._executor is None:  # stopping
            return
        if len(self._tasks) >= MAX_PEER_TX_BATCHES:  # admission is behind: shed gossip, not memory
            self.log.warning("dropping %d gossiped txs from %s: admission backlog", len(raws), sender_key.hex()[:16],
                             extra={"event": "gossip_shed", "txs": len(raws), "peer": sender_key.hex()})
            return
        task = asyncio.get_running_loop().create_task(self.submit_txs(list(raws), gossip=False))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_consensus(self, sender_key: bytes, raw: bytes) -> None:
        self.runner.on_consensus_bytes(sender_key, raw)

    def serve_blocks(self, from_height: int, limit: int) -> list[tuple[bytes, bytes]]:
        out = []
        h = max(1, from_height)
        top = min(self.chain.height, h + max(0, min(limit, MAX_SERVE_BLOCKS)) - 1)
        while h <= top:
            block = self.chain.get_block_raw(h)
            cert = self.chain.get_cert(h)
            if block is None or cert is None:
                break
            out.append((block, cert.encode()))
            h += 1
        return out

    # status and metrics -------------------------------------------------------------------------
    def _on_commit_metrics(self, block, result, cert, admitted: dict) -> None:
        m = self.metrics
        m.height.set(block.height)
        m.blocks_committed.inc()
        m.txs_committed.inc(len(result.txs))
        for r in result.receipts:
            if not r.ok:
                m.txs_failed.labels(r.code).inc()
        now = time.monotonic()
        for t in admitted.values():
            if t is not None:
                m.commit_latency.observe(max(0.0, now - t))

    def _on_commit_params(self, block, result, cert, admitted: dict) -> None:
        # governance may change the transaction size limit
        self.mempool.max_tx_bytes = self.chain.params.get("max_tx_bytes", self.mempool.max_tx_bytes)

    def _on_commit_stall(self, block, result, cert, admitted: dict) -> None:
        self._view_changes_at_commit = self.runner.view_changes

    def refresh_metrics(self) -> None:
        m = self.metrics
        m.height.set(self.chain.height)
        m.view.set(self.runner.view)
        # counters from the runner's running totals: add what is new since the last scrape
        m.view_changes.inc(max(0, self.runner.view_changes - self._view_changes_counted))
        self._view_changes_counted = max(self._view_changes_counted, self.runner.view_changes)
        m.set_evidence(self.runner.evidence_count)
        m.mempool_txs.set(len(self.mempool))
        m.mempool_bytes.set(self.mempool.bytes)
        m.peers_connected.set(len(self._connected_peers()))
        m.catching_up.set(1 if getattr(self.runner, "catching_up", False) else 0)
        m.duplicate_key.set(1 if getattr(self.runner, "duplicate_key", False) else 0)
        m.validator.set(1 if getattr(self.runner, "role", VALIDATOR) == VALIDATOR else 0)
        best_fn = getattr(self.transport, "best_peer_height", None)
        best = best_fn() if best_fn is not None else None
        m.blocks_behind.set(0 if best is None else max(0, best - self.chain.height))
        full_fn = getattr(self.transport, "full_node_status", None)
        m.full_node_sessions.set(len(full_fn()) if full_fn is not None else 0)
        m.set_clock(self.clock_status(), self.transport.peer_status(), self.runner.clock_refusals)

    def clock_status(self) -> dict:
        skew_fn = getattr(self.transport, "clock_skew_ms", None)
        return views.clock_view(skew_fn() if skew_fn is not None else None,
                                self.transport.peer_status(), self.chain.params.get("time_skew_ms", 2000),
                                self.runner.clock_refusals)

    def _render_metrics(self) -> bytes:
        self.refresh_metrics()
        return self.metrics.render()

    # health -----------------------------------------------------------------------------------------
    def _connected_peers(self) -> list[str]:
        """Keys (hex) of the validators this node has a live session with, as the transport
        says; for a full node, of every peer it follows (validators and full nodes)."""
        keys = {k.hex() for k in self.chain.validator_keys}
        following = self.runner is not None and self.runner.role == FULL
        return [p["key"] for p in self.transport.peer_status()
                if p.get("connected") and (following or p.get("key") in keys)]

    def _is_validator(self) -> bool:
        return self.signer.public_key in self.chain.validator_keys

    def _stalled_reason(self, connected: int) -> str | None:
        if self.runner is not None and self.runner.role == FULL:
            return None  # a full node does not count towards a quorum: nothing stalls through it
        return healthmod.stalled_reason(
            validators=len(self.chain.validator_keys), connected_validators=connected,
            is_validator=self._is_validator(),
            views_since_commit=self.runner.view_changes - self._view_changes_at_commit)

    def health(self) -> dict:
        """GET /health: ready, or degraded with reasons (node.health.assess of the status)."""
        return healthmod.assess(self.status())

    async def _watch_stall(self) -> None:
        """Say in the log when the chain cannot move through this node (rate-limited)."""
        while True:
            await asyncio.sleep(STALL_CHECK_S)
            try:
                connected = len(self._connected_peers())
                reason = self._stalled_reason(connected)
                note = self._stall.check(reason, time.monotonic_ns() // 1_000_000)
            except Exception:  # never let the watcher die silently
                self.log.exception("stall check failed")
                continue
            if note is None:
                continue
            kind, code = note
            fields = {"event": kind, "reason": code, "height": self.chain.height, "view": self.runner.view,
                      "peers_connected": connected, "validators": len(self.chain.validator_keys),
                      "views_since_commit": self.runner.view_changes - self._view_changes_at_commit}
            if kind == "stalled":
                self.log.warning("chain stalled at height %d: %s", self.chain.height,
                                 healthmod.describe(code), extra=fields)
            else:
                self.log.info("chain no longer stalled (was: %s)", code, extra=fields)

    def status(self) -> dict:
        head = self.chain.head
        primary = self.runner.primary()
        return {
            "chain_id": self.chain_id,
            "genesis_hash": self.genesis_hash.hex(),
            "node_key": self.signer.public_key.hex(),
            "node_address": self.signer.address,
            "height": head.height,
            "head_hash": head.block_hash.hex(),
            "state_root": head.state_root.hex(),
            "time_ms": head.time_ms,
            "now_ms": runner_now_ms(),
            "view": self.runner.view,
            "view_changes": self.runner.view_changes,
            "primary": None if primary is None else primary.hex(),
            "validators": [views.validator_view(v) for v in self.chain.validators],
            "mempool": {"txs": len(self.mempool), "bytes": self.mempool.bytes,
                        "ready": self.mempool.ready_count()},
            "peers": self.transport.peer_status(),
            "evidence": self.runner.evidence_count,
            "clock": self.clock_status(),
            "base_height": self.chain.base_height,  # >0: started from a state-sync snapshot there
        } | self._ops_status(head)

    def _ops_status(self, head) -> dict:
        """The operations fields of /v1/status (issue 12): what this node is, whether it is
        catching up, who it is connected to, and whether the chain can move through it."""
        connected = self._connected_peers()
        now_ms = runner_now_ms()
        role = getattr(self.runner, "role", VALIDATOR if self._is_validator() else FULL)
        best_fn = getattr(self.transport, "best_peer_height", None)
        best = best_fn() if best_fn is not None else None
        if best is not None:
            best = max(best, head.height)
        behind = None if best is None else best - head.height
        catching_up = bool(getattr(self.runner, "catching_up", False))
        if role == FULL:  # following live always fetches: "catching up" means well behind
            catching_up = behind is not None and behind > FULL_BEHIND_BLOCKS
        full_fn = getattr(self.transport, "full_node_status", None)
        return {
            "version": self.version,
            "role": role,
            "configured_role": self.config.role,
            "best_peer_height": best,
            "blocks_behind": behind,
            "full_nodes": full_fn() if full_fn is not None else [],
            "follow": {"refused_blocks": getattr(self.runner, "follow_refusals", 0),
                       "last_refusal": getattr(self.runner, "last_follow_error", "") or None,
                       "refused_consensus": getattr(self.runner, "refused_consensus", 0),
                       "role_changes": list(getattr(self.runner, "role_changes", []))},
            "catching_up": catching_up,
            "peers_connected": len(connected),
            "connected_peers": connected,
            "last_commit_age_ms": None if head.height == 0 else max(0, now_ms - head.time_ms),
            "views_since_commit": self.runner.view_changes - self._view_changes_at_commit,
            "stalled_reason": self._stalled_reason(len(connected)),
            # another process runs with this node's key (peers replaced our session with its):
            # {"peer", "since_ms", "seen"} and this node has stopped signing; null otherwise
            "duplicate_key": self._duplicate_key(),
        }

    def _duplicate_key(self) -> dict | None:
        seen = getattr(self.transport, "duplicate_key", None)
        return dict(seen) if seen and getattr(self.runner, "duplicate_key", False) else None


# -- running until a signal ------------------------------------------------------------------------

async def serve(home: str | Path, *, passphrase: str | None = None, config: NodeConfig | None = None,
                on_started: Callable[[], None] | None = None) -> None:
    node = Node(home, passphrase=passphrase, config=config, process_log=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
            pass
    try:
        loop.add_signal_handler(signal.SIGHUP, node.reload_log_level)
    except (NotImplementedError, RuntimeError, AttributeError):  # pragma: no cover - non-Unix
        pass
    await node.start()
    print(json.dumps({"event": "started", "api": node.api_url, "metrics": node.metrics_url,
                      "height": node.chain.height, "node_key": node.signer.public_key.hex()}), flush=True)
    if on_started is not None:
        on_started()
    stopping = asyncio.ensure_future(stop.wait())
    try:
        # until a signal, or until the runner halts (a durable write failed): then stop with an error
        await asyncio.wait([stopping, node.runner.task], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        node.log.info("shutting down")
        await node.stop()
    if node.runner.failure is not None:
        raise NodeError(f"the node halted: {node.runner.failure}", "halted")


def run_node(home: str | Path, *, passphrase: str | None = None, state_sync: str | None = None) -> None:
    """Run a node until SIGTERM or SIGINT; logs JSON lines to stderr and HOME/node.log.

    HOME/node.log is opened before anything else, so a node that does not start (bad
    config, a refused key, a port in use, a locked store) says why there too."""
    nh = NodeHome(Path(home))
    failure: Exception | None = None
    started: list[bool] = []
    try:
        cfg = cfgmod.load_config(home)
        if state_sync:  # `cxl node start --state-sync` overrides config.json
            cfg = dataclasses.replace(cfg, state_sync=state_sync)
    except ConfigError as exc:
        cfg, failure = NodeConfig(), exc  # log it with the defaults, then fail
    setup_stderr_logging(cfg.log_level)
    root = logging.getLogger("cxl")
    log = logging.getLogger("cxl.node")
    handler = None
    if nh.path.is_dir():
        try:
            handler = file_handler(nh.log_file, cfg.log_max_bytes, cfg.log_backups)
            limit_repeats(handler)
            root.addHandler(handler)
        except OSError as exc:  # a home it may not write: stderr still has everything
            log.warning("cannot write %s: %s", nh.log_file, exc.strerror or exc)
    if passphrase is None:
        passphrase = os.environ.get("CXL_PASSPHRASE")
    try:
        if failure is not None:
            raise failure
        asyncio.run(serve(home, passphrase=passphrase, config=cfg, on_started=lambda: started.append(True)))
    except (NodeError, LedgerError, OSError) as exc:
        code = getattr(exc, "code", None) or type(exc).__name__
        what = "node stopped on an error" if started else "node did not start"
        log.error("%s: %s", what, getattr(exc, "message", None) or exc,
                  extra={"event": "failed" if started else "start_failed", "code": code, "home": str(nh.path)})
        raise
    finally:
        if handler is not None:
            root.removeHandler(handler)
            handler.close()
