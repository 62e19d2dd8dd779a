"""Four validators in one process over the real p2p transport (authenticated WebSockets
on 127.0.0.1), each with its own LevelDB: transactions submitted to any node commit on
all of them with identical blocks; a stopped validator does not stop the other three,
and catches up with the chain when it comes back."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import socket
import time

import aiohttp
import pytest

from genesis.schema import genesis_hash, save as save_genesis, validate
from genesis.testnet import make_testnet
from ledger.keystore import write_key
from ledger.tx import make_tx

from node.app import Node
from node.config import init_home, load_config

pytestmark = pytest.mark.slow


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture
def net_homes(tmp_path):
    return make_homes(tmp_path, {"view_timeout_ms": 800, "block_interval_ms": 20})


def make_homes(tmp_path, params: dict):
    net = make_testnet(n_validators=4, params=params)
    ports = _free_ports(4)
    doc = dict(net.doc)
    doc["validators"] = [dict(v, p2p=f"http://127.0.0.1:{p}") for v, p in zip(doc["validators"], ports)]
    doc = validate(doc)
    net.doc, net.genesis_hash = doc, genesis_hash(doc)
    save_genesis(doc, tmp_path / "genesis.json")
    homes = []
    for i, signer in enumerate(net.validators):
        write_key(tmp_path / f"v{i}.json", signer)
        homes.append(init_home(tmp_path / f"node{i}", tmp_path / "genesis.json", tmp_path / f"v{i}.json",
                               p2p_port=ports[i]).path)
    return net, homes


async def start(home, **overrides) -> Node:
    node = Node(home, config=dataclasses.replace(load_config(home), api_port=0, **overrides))
    await node.start()
    return node


async def until(cond, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s")
        await asyncio.sleep(0.05)


async def submit(session, node, stx):
    async with session.post(node.api_url + "/v1/txs", json={"tx": base64.b64encode(stx.raw).decode()}) as r:
        assert r.status == 202, await r.text()


async def test_four_validators_commit_the_same_chain_and_survive_one_down(net_homes):
    net, homes = net_homes
    chain_id = net.doc["chain_id"]
    admin, to = net.admins["org1"], net.operators["org2"].address
    nodes = [await start(h) for h in homes]
    try:
        async with aiohttp.ClientSession() as s:
            txs = [make_tx(admin, chain_id, n, "transfer", {"to": to, "amount": 1}) for n in range(10)]
            for i, t in enumerate(txs):
                await submit(s, nodes[i % 4], t)  # any node: gossip brings it to the primary
            await until(lambda: all(n.chain.get_tx(txs[-1].hash) for n in nodes), what="all nodes commit")
            top = min(n.chain.height for n in nodes)
            for h in range(1, top + 1):
                assert len({n.chain.get_block(h).hash for n in nodes}) == 1

            # one validator down (f = 1): the other three keep committing
            down = nodes.pop(3)
            await down.stop()
            more = [make_tx(admin, chain_id, 10 + n, "transfer", {"to": to, "amount": 1}) for n in range(5)]
            for t in more:
                await submit(s, nodes[0], t)
            await until(lambda: all(n.chain.get_tx(more[-1].hash) for n in nodes), timeout=30,
                        what="three nodes commit")

            # it comes back and catches up
            nodes.append(await start(homes[3]))
            last = make_tx(admin, chain_id, 15, "transfer", {"to": to, "amount": 1})
            await submit(s, nodes[0], last)
            await until(lambda: all(n.chain.get_tx(last.hash) for n in nodes), timeout=30,
                        what="restarted node catches up")
            top = min(n.chain.height for n in nodes)
            assert len({n.chain.get_block(top).hash for n in nodes}) == 1
            assert len({n.chain.head.state_root for n in nodes if n.chain.height == top}) == 1
    finally:
        for n in nodes:
            await n.stop()


async def test_primary_down_view_change_keeps_the_chain_going(net_homes):
    net, homes = net_homes
    chain_id = net.doc["chain_id"]
    admin, to = net.admins["org1"], net.operators["org2"].address
    nodes = [await start(h) for h in homes]
    try:
        primary_key = nodes[0].runner.primary()
        primary = next(n for n in nodes if n.signer.public_key == primary_key)
        nodes.remove(primary)
        await primary.stop()
        async with aiohttp.ClientSession() as s:
            t = make_tx(admin, chain_id, 0, "transfer", {"to": to, "amount": 1})
            await submit(s, nodes[0], t)
            await until(lambda: all(n.chain.get_tx(t.hash) for n in nodes), timeout=30,
                        what="commit after a view change")
            assert all(n.runner.view >= 1 for n in nodes)
            async with s.get(nodes[0].api_url + "/v1/status") as r:
                st = await r.json()
            assert st["view"] >= 1 and st["primary"] != primary_key.hex()
            async with s.get(nodes[0].metrics_url + "/metrics") as r:
                text = await r.text()
            assert "cxl_view_changes_total" in text and "cxl_view_changes_total 0.0" not in text
    finally:
        for n in nodes:
            await n.stop()


async def test_restarted_node_catches_up_in_an_idle_network(net_homes):
    net, homes = net_homes
    chain_id = net.doc["chain_id"]
    admin, to = net.admins["org1"], net.operators["org2"].address
    nodes = [await start(h, sync_interval_ms=300) for h in homes]
    try:
        late = nodes.pop(3)
        await late.stop()
        async with aiohttp.ClientSession() as s:
            txs = [make_tx(admin, chain_id, n, "transfer", {"to": to, "amount": 1}) for n in range(6)]
            for t in txs:
                await submit(s, nodes[0], t)
                await until(lambda: all(n.chain.get_tx(t.hash) for n in nodes), what="commit")
        top = nodes[0].chain.height
        assert top >= 2
        back = await start(homes[3], sync_interval_ms=300)
        nodes.append(back)
        # no new transactions: only the periodic sync check can bring it up to date
        await until(lambda: back.chain.height == top, timeout=20, what="idle catch-up")
        assert back.chain.head.block_hash == nodes[0].chain.head.block_hash
    finally:
        for n in nodes:
            await n.stop()


async def test_an_idle_network_does_not_change_views(net_homes):
    """After the mempools drain, nothing is pending: no progress timeout may fire a view change."""
    net, homes = net_homes
    chain_id = net.doc["chain_id"]
    admin, to = net.admins["org1"], net.operators["org2"].address
    nodes = [await start(h) for h in homes]
    try:
        async with aiohttp.ClientSession() as s:
            txs = [make_tx(admin, chain_id, n, "transfer", {"to": to, "amount": 1}) for n in range(5)]
            for i, t in enumerate(txs):
                await submit(s, nodes[i % 4], t)
            await until(lambda: all(n.chain.get_tx(txs[-1].hash) for n in nodes), what="commit")
        await asyncio.sleep(2.5)  # three view timeouts (800 ms) of idleness
        assert [n.runner.view for n in nodes] == [0, 0, 0, 0]
        assert all(len(n.mempool) == 0 for n in nodes)
    finally:
        for n in nodes:
            await n.stop()


async def test_an_idle_network_makes_heartbeat_blocks_without_view_changes(tmp_path):
    """With a 1 s heartbeat_interval_ms and no transaction at all, the primary proposes an
    empty block each second, every replica accepts it (it is due), and nobody suspects
    the primary in between."""
    net, homes = make_homes(tmp_path, {"view_timeout_ms": 800, "block_interval_ms": 20,
                                       "heartbeat_interval_ms": 1_000})
    nodes = [await start(h) for h in homes]
    try:
        await until(lambda: min(n.chain.height for n in nodes) >= 4, timeout=60, what="four heartbeat blocks")
        top = min(n.chain.height for n in nodes)
        for h in range(1, top + 1):
            blocks = {n.chain.get_block(h).hash: n.chain.get_block(h) for n in nodes}
            assert len(blocks) == 1, f"nodes disagree at height {h}"
            (block,) = blocks.values()
            assert block.txs == ()
            if h > 1:  # never before the interval since the parent (the first one: since genesis)
                parent = nodes[0].chain.get_block(h - 1)
                assert block.header.time_ms - parent.header.time_ms >= 1_000
        assert [n.runner.view for n in nodes] == [0, 0, 0, 0]
        assert all(n.runner.view_changes == 0 for n in nodes)
    finally:
        for n in nodes:
            await n.stop()


async def test_validators_over_pinned_mutual_tls(net_homes):
    net, homes = net_homes
    admin, to = net.admins["org1"], net.operators["org2"].address
    nodes = [await start(h, p2p_tls=True) for h in homes]
    try:
        async with aiohttp.ClientSession() as s:
            t = make_tx(admin, net.doc["chain_id"], 0, "transfer", {"to": to, "amount": 1})
            await submit(s, nodes[2], t)
            await until(lambda: all(n.chain.get_tx(t.hash) for n in nodes), what="commit over TLS")
        assert all(p["connected"] for p in nodes[0].transport.peer_status())
    finally:
        for n in nodes:
            await n.stop()


async def test_a_second_process_with_a_node_key_stops_signing_and_says_so(net_homes, tmp_path):
    """An HA mistake: node0's key also runs in a twin. The peers keep the newest session from
    the key, so node0 is told its session was replaced: it stops signing and reports
    duplicate_key in status, /health and metrics; the other three keep the chain going."""
    net, homes = net_homes
    chain_id = net.doc["chain_id"]
    admin, to = net.admins["org1"], net.operators["org2"].address
    nodes = [await start(h) for h in homes]
    twin = None
    try:
        await until(lambda: all(n.status()["peers_connected"] == 3 for n in nodes), what="full mesh")
        assert nodes[0].status()["duplicate_key"] is None
        assert "duplicate_key" not in [r["code"] for r in nodes[0].health()["reasons"]]
        twin_home = init_home(tmp_path / "twin", tmp_path / "genesis.json", tmp_path / "v0.json",
                              p2p_port=_free_ports(1)[0]).path
        twin = await start(twin_home)
        await until(lambda: nodes[0].status()["duplicate_key"] or twin.status()["duplicate_key"], timeout=30,
                    what="duplicate key detected")
        flagged = nodes[0] if nodes[0].status()["duplicate_key"] else twin
        dup = flagged.status()["duplicate_key"]
        assert dup["peer"] in {n.signer.public_key.hex() for n in nodes[1:]} and dup["seen"] >= 1
        health = flagged.health()
        assert health["status"] == "degraded" and "duplicate_key" in [r["code"] for r in health["reasons"]]
        flagged.refresh_metrics()
        assert flagged.metrics.duplicate_key._value.get() == 1
        signed_before = flagged.runner.signed_state
        async with aiohttp.ClientSession() as s:
            txs = [make_tx(admin, chain_id, n, "transfer", {"to": to, "amount": 1}) for n in range(3)]
            for t in txs:
                await submit(s, nodes[1], t)
            # three validators still certify blocks (f = 1) without the flagged one
            await until(lambda: all(n.chain.get_tx(txs[-1].hash) for n in nodes[1:]), timeout=30,
                        what="the other three commit")
        # the flagged process signed nothing more (its signing record did not move); the
        # other process with the key may still sign until it is told too
        assert flagged.runner.signed_state == signed_before
    finally:
        for n in nodes + ([twin] if twin else []):
            await n.stop()
