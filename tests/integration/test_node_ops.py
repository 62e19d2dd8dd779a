"""Operations of one node (issue 12): status fields, /health, the metrics listener, the
log level at runtime, the JSON log with fields and start-up failures in node.log."""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncio
import base64

import aiohttp
import pytest

from genesis.schema import save as save_genesis
from genesis.testnet import make_testnet
from ledger.keystore import write_key
from ledger.tx import make_tx

from node.app import Node, run_node
from node.config import init_home, load_config
from node.errors import ConfigError

# no interval heartbeats: the genesis time is years ago, and these tests count blocks from 0
NET = make_testnet(n_validators=1, params={"heartbeat_interval_ms": 0})
CHAIN_ID = NET.doc["chain_id"]
ADMIN = NET.admins["org1"]
OP2 = NET.operators["org2"]


def make_home(tmp_path: Path, **settings) -> Path:
    save_genesis(NET.doc, tmp_path / "genesis.json")
    write_key(tmp_path / "validator.json", NET.validators[0])
    home = tmp_path / "home"
    init_home(home, tmp_path / "genesis.json", tmp_path / "validator.json", api_port=1, **settings)
    return home


async def start(home: Path, **overrides) -> Node:
    node = Node(home, config=dataclasses.replace(load_config(home), api_port=0, **overrides))
    await node.start()
    return node


async def get(session, url):
    async with session.get(url) as r:
        ctype = r.headers.get("Content-Type", "")
        return r.status, (await r.json() if "json" in ctype else await r.text())


async def test_status_has_the_operations_fields_and_health_is_ready(tmp_path):
    node = await start(make_home(tmp_path))
    try:
        async with aiohttp.ClientSession() as s:
            status, st = await get(s, node.api_url + "/v1/status")
            assert status == 200
            assert st["version"] and st["role"] == "validator" and st["catching_up"] is False
            assert st["peers_connected"] == 0 and st["connected_peers"] == []
            assert st["last_commit_age_ms"] is None  # height 0: nothing committed yet
            assert st["stalled_reason"] is None and st["views_since_commit"] == 0
            assert await get(s, node.api_url + "/health") == (200, {"status": "ready", "reasons": []})
            assert await get(s, node.metrics_url + "/health") == (200, {"status": "ready", "reasons": []})
    finally:
        await node.stop()


async def test_health_is_degraded_without_quorum(tmp_path):
    """A node of a 4-validator chain whose peers are all down: no peers, no quorum, 503."""
    net = make_testnet(n_validators=4)
    save_genesis(net.doc, tmp_path / "genesis.json")
    write_key(tmp_path / "validator.json", net.validators[0])
    home = tmp_path / "home"
    init_home(home, tmp_path / "genesis.json", tmp_path / "validator.json", api_port=1)
    node = await start(home, p2p_port=_free_port())
    node._stall.grace_ms = 0  # the default 5 s grace is unit-tested; here: the wiring
    try:
        async with aiohttp.ClientSession() as s:
            status, st = await get(s, node.api_url + "/v1/status")
            assert st["stalled_reason"] == "no_quorum" and st["peers_connected"] == 0
            # while its start-up sync still asks for peers the node also says it is behind
            if st["catching_up"]:
                status, verdict = await get(s, node.api_url + "/health")
                assert "behind" in [r["code"] for r in verdict["reasons"]]
            from tests.integration.test_node_multi import until
            await until(lambda: not node.status()["catching_up"], timeout=20,
                        what="the start-up sync gave up on absent peers")
            status, verdict = await get(s, node.api_url + "/health")
            assert status == 503 and verdict["status"] == "degraded"
            assert [r["code"] for r in verdict["reasons"]] == ["no_peers", "no_quorum"]
        stalled = []
        for _ in range(50):  # the stall watcher looks once a second: at most 5 s
            lines = [json.loads(x) for x in node.home.log_file.read_text().splitlines()]
            stalled = [x for x in lines if x.get("event") == "stalled"]
            if stalled:
                break
            await asyncio.sleep(0.1)
        assert len(stalled) == 1 and stalled[0]["level"] == "warning"  # once, not once a second
        assert stalled[0]["reason"] == "no_quorum" and stalled[0]["validators"] == 4
    finally:
        await node.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_metrics_are_on_their_own_listener_with_prometheus_names(tmp_path):
    node = await start(make_home(tmp_path))
    try:
        assert node.metrics_port and node.metrics_port != node.api_port
        async with aiohttp.ClientSession() as s:
            status, _ = await get(s, node.api_url + "/metrics")
            assert status == 404  # not on the public client API any more
            status, text = await get(s, node.metrics_url + "/metrics")
        assert status == 200
        for series in ("cxl_view_changes_total 0.0", "cxl_evidence_total 0.0", "cxl_txs_committed_total 0.0",
                       "cxl_blocks_committed_total 0.0", 'cxl_build_info{python=', f'version="{node.version}"',
                       "process_cpu_seconds_total", "python_info", "cxl_catching_up 0.0"):
            assert series in text, series
        assert "# TYPE cxl_view_changes_total counter" in text and "# TYPE cxl_txs_failed_total counter" in text
        assert "_created" not in text  # no per-counter creation-time series
    finally:
        await node.stop()


async def test_log_level_changes_at_runtime_from_loopback_only(tmp_path):
    node = await start(make_home(tmp_path))
    try:
        async with aiohttp.ClientSession() as s:
            assert await get(s, node.metrics_url + "/admin/log-level") == (200, {"level": "info"})
            async with s.post(node.metrics_url + "/admin/log-level", json={"level": "debug"}) as r:
                assert r.status == 200 and (await r.json()) == {"level": "debug"}
            assert node.log.isEnabledFor(logging.DEBUG)
            async with s.post(node.metrics_url + "/admin/log-level", json={"level": "loud"}) as r:
                body = await r.json()
                assert r.status == 400 and body["error"]["code"] == "bad_log_level"
            async with s.post(node.metrics_url + "/admin/log-level", data=b"{not json") as r:
                assert r.status == 400
            assert node.log_level() == "debug"  # bad requests changed nothing
        lines = [json.loads(x) for x in node.home.log_file.read_text().splitlines()]
        change = [x for x in lines if x.get("event") == "log_level"]
        assert change and change[-1]["old_level"] == "info" and change[-1]["new_level"] == "debug"
        started = [x for x in lines if x.get("event") == "started"]
        assert started and started[0]["height"] == 0 and started[0]["chain_id"] == CHAIN_ID
    finally:
        await node.stop()


async def test_failed_and_committed_txs_are_counted_and_commit_age_shows(tmp_path):
    node = await start(make_home(tmp_path))
    try:
        async with aiohttp.ClientSession() as s:
            txs = [make_tx(ADMIN, CHAIN_ID, 0, "transfer", {"to": OP2.address, "amount": 5}),
                   make_tx(ADMIN, CHAIN_ID, 1, "transfer", {"to": OP2.address, "amount": 10**15})]
            for t in txs:
                async with s.post(node.api_url + "/v1/txs", json={"tx": base64.b64encode(t.raw).decode()}) as r:
                    assert r.status == 202
            for t in txs:
                status, body = await get(s, node.api_url + f"/v1/txs/{t.hash.hex()}?wait=10")
                assert body["status"] == "committed"
            _, text = await get(s, node.metrics_url + "/metrics")
            _, st = await get(s, node.api_url + "/v1/status")
        assert "cxl_txs_committed_total 2.0" in text
        assert 'cxl_txs_failed_total{code="insufficient_funds"} 1.0' in text
        assert "cxl_txs_failed_total{code=\"ok\"}" not in text
        assert isinstance(st["last_commit_age_ms"], int) and st["last_commit_age_ms"] >= 0
    finally:
        await node.stop()


def test_admin_post_refused_from_a_non_loopback_address():
    from node.metrics import _loopback

    assert _loopback("127.0.0.1") and _loopback("::1")
    assert not _loopback("10.0.0.5") and not _loopback(None) and not _loopback("junk")


async def test_sighup_reload_reads_log_level_from_config_and_env(tmp_path, monkeypatch):
    home = make_home(tmp_path)
    node = await start(home)
    try:
        cfg = json.loads(node.home.config_file.read_text())
        cfg["log_level"] = "error"
        node.home.config_file.write_text(json.dumps(cfg))
        node.reload_log_level()
        assert node.log_level() == "error"
        monkeypatch.setenv("CXL_LOG_LEVEL", "warning")
        node.reload_log_level()
        assert node.log_level() == "warning"
        monkeypatch.setenv("CXL_LOG_LEVEL", "loud")  # a bad reload keeps the level
        node.reload_log_level()
        assert node.log_level() == "warning"
    finally:
        await node.stop()


async def test_busy_metrics_port_is_a_clear_start_up_error(tmp_path):
    home = make_home(tmp_path)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        node = Node(home, config=dataclasses.replace(load_config(home), api_port=0, metrics_port=port))
        with pytest.raises(ConfigError) as err:
            await node.start()
    assert err.value.code == "metrics_port_busy" and "metrics_port" in err.value.message


@pytest.mark.parametrize("breakage, code", [
    ("config", "bad_config"),
    ("key", "bad_key_file"),
    ("port", "api_port_busy"),
    ("store", "store_locked"),
])
def test_start_up_failures_are_written_to_node_log(tmp_path, breakage, code):
    home = make_home(tmp_path)
    blocker = store = None
    if breakage == "store":  # another process has the chain data open
        from ledger.store.leveldb import LevelDBStore
        store = LevelDBStore(home / "data")
    if breakage == "config":
        (home / "config.json").write_text('{"api_port": "eighty"}')
    elif breakage == "key":
        (home / "node_key.json").write_text("{}")
    elif breakage == "port":
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        cfg = json.loads((home / "config.json").read_text())
        cfg["api_port"] = blocker.getsockname()[1]
        cfg["metrics_port"] = 0
        (home / "config.json").write_text(json.dumps(cfg))
    try:
        with pytest.raises(ConfigError):
            run_node(home)
    finally:
        if blocker is not None:
            blocker.close()
        if store is not None:
            store.close()
    lines = [json.loads(x) for x in (home / "node.log").read_text().splitlines()]
    failed = [x for x in lines if x.get("event") == "start_failed"]
    assert len(failed) == 1 and failed[0]["level"] == "error" and "did not start" in failed[0]["msg"]
    assert failed[0]["code"] == code
    assert failed[0]["home"] == str(home)


ROOT = Path(__file__).resolve().parents[2]


def _level(metrics_url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(metrics_url + "/admin/log-level", timeout=5) as r:
        return json.loads(r.read())["level"]


@pytest.mark.slow
def test_python_m_node_sighup_changes_the_level_and_env_overrides_apply(tmp_path):
    """A real process: CXL_* variables override config.json; SIGHUP re-reads log_level."""
    home = make_home(tmp_path, log_level="warning")
    env = dict(__import__("os").environ, PYTHONPATH=str(ROOT), CXL_API_PORT=str(_free_port()),
               CXL_METRICS_PORT="0")
    env.pop("CXL_LOG_LEVEL", None)
    proc = subprocess.Popen([sys.executable, "-m", "node", str(home)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=str(ROOT), text=True)
    try:
        started = json.loads(proc.stdout.readline())
        assert started["event"] == "started" and started["api"].endswith(":" + env["CXL_API_PORT"])
        assert started["metrics"] and not started["metrics"].endswith(":0")
        assert _level(started["metrics"]) == "warning"
        cfg = json.loads((home / "config.json").read_text())
        cfg["log_level"] = "debug"
        (home / "config.json").write_text(json.dumps(cfg))
        proc.send_signal(signal.SIGHUP)
        for _ in range(50):  # at most 5 s for the signal to be handled
            if _level(started["metrics"]) == "debug":
                break
            time.sleep(0.1)
        assert _level(started["metrics"]) == "debug"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [json.loads(x) for x in (home / "node.log").read_text().splitlines()]
    assert any(x.get("event") == "log_level" and x.get("new_level") == "debug" for x in lines)


@pytest.mark.slow
async def test_four_nodes_report_connected_peers_and_lose_quorum_when_two_stop(tmp_path):
    """Real p2p sessions: 3 connected peers and ready; with two of four stopped, a
    survivor says no_quorum in status and /health, and 1 connected peer."""
    from tests.integration.test_node_multi import _free_ports, until
    from genesis.schema import genesis_hash, validate

    net = make_testnet(n_validators=4, params={"view_timeout_ms": 800, "block_interval_ms": 20})
    ports = _free_ports(4)
    doc = validate(dict(net.doc, validators=[dict(v, p2p=f"http://127.0.0.1:{p}")
                                             for v, p in zip(net.doc["validators"], ports)]))
    save_genesis(doc, tmp_path / "genesis.json")
    homes = []
    for i, signer in enumerate(net.validators):
        write_key(tmp_path / f"v{i}.json", signer)
        homes.append(init_home(tmp_path / f"node{i}", tmp_path / "genesis.json", tmp_path / f"v{i}.json",
                               p2p_port=ports[i]).path)
    nodes = [await start(h) for h in homes]
    try:
        await until(lambda: all(n.status()["peers_connected"] == 3 for n in nodes), timeout=30,
                    what="every node connected to the three others")
        st = nodes[0].status()
        assert set(st["connected_peers"]) == {n.signer.public_key.hex() for n in nodes[1:]}
        # ready once each node's start-up sync has heard from f+1 peers
        await until(lambda: all(n.health()["status"] == "ready" for n in nodes), timeout=30,
                    what="every node ready")
        for n in nodes[2:]:
            await n.stop()
        await until(lambda: nodes[0].status()["peers_connected"] == 1, timeout=30,
                    what="node 1 sees its two peers gone")
        st = nodes[0].status()
        assert st["stalled_reason"] == "no_quorum"
        assert [r["code"] for r in nodes[0].health()["reasons"]] == ["no_quorum"]
        async with aiohttp.ClientSession() as s:
            status, verdict = await get(s, nodes[0].api_url + "/health")
        assert status == 503 and verdict["status"] == "degraded"
    finally:
        for n in nodes:
            await n.stop()
