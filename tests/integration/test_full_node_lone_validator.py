"""A full node and a chain of one validator, in one process (real Node objects, real
LevelDB, real p2p): the lone validator runs without a p2p transport until governance
lists the full node (add_node); at that commit it starts one, with no restart, and the
full node follows it, serves the same chain and forwards transactions to it. A second
listed full node dials the first as well (full nodes serve each other)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import socket
import time

import aiohttp

from genesis.schema import save as save_genesis, validate
from genesis.testnet import make_testnet
from ledger.crypto import Signer
from ledger.encoding import sha256
from ledger.keystore import write_key
from ledger.tx import make_tx
from node.app import Node
from node.config import init_home, load_config
from node.transport import NullTransport

FULL = Signer(sha256(b"lone-validator-full-node"))
FULL2 = Signer(sha256(b"lone-validator-second-full-node"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def until(what, cond, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.05)


async def post(session, node, stx) -> dict:
    async with session.post(node.api_url + "/v1/txs", json={"tx": base64.b64encode(stx.raw).decode()}) as r:
        assert r.status in (200, 202), await r.text()
        return await r.json()


async def committed(session, node, stx) -> dict:
    async with session.get(node.api_url + f"/v1/txs/{stx.hash.hex()}?wait=10") as r:
        body = await r.json()
        assert r.status == 200 and body["status"] == "committed", body
        return body


def lone_validator_home(tmp_path, net, v_port: int):
    """The genesis (the one validator's p2p endpoint on v_port) in tmp_path/genesis.json, the
    validator's home tmp_path/v, and FULL's key file tmp_path/f.json."""
    doc = dict(net.doc)
    doc["validators"] = [dict(doc["validators"][0], p2p=f"http://127.0.0.1:{v_port}")]
    doc = validate(doc)
    save_genesis(doc, tmp_path / "genesis.json")
    write_key(tmp_path / "v.json", net.validators[0])
    write_key(tmp_path / "f.json", FULL)
    return doc, init_home(tmp_path / "v", tmp_path / "genesis.json", tmp_path / "v.json", p2p_port=v_port).path


async def test_a_lone_validator_starts_p2p_for_a_listed_full_node_which_follows_and_forwards(tmp_path):
    net = make_testnet(n_validators=1, params={"block_interval_ms": 20})
    v_port, f_port, f2_port = free_port(), free_port(), free_port()
    doc, vhome = lone_validator_home(tmp_path, net, v_port)
    write_key(tmp_path / "f2.json", FULL2)
    fhome = init_home(tmp_path / "f", tmp_path / "genesis.json", tmp_path / "f.json", p2p_port=f_port,
                      role="full", follow_interval_ms=50).path
    f2home = init_home(tmp_path / "f2", tmp_path / "genesis.json", tmp_path / "f2.json", p2p_port=f2_port,
                       role="full", follow_interval_ms=50).path
    validator = Node(vhome, config=dataclasses.replace(load_config(vhome), api_port=0, metrics_port=0))
    full = Node(fhome, config=dataclasses.replace(load_config(fhome), api_port=0, metrics_port=0))
    second = Node(f2home, config=dataclasses.replace(load_config(f2home), api_port=0, metrics_port=0))
    await validator.start()
    await full.start()
    await second.start()
    chain_id = doc["chain_id"]
    try:
        assert isinstance(validator.transport, NullTransport)
        assert full.status()["role"] == "full" and full.runner.role == "full"
        async with aiohttp.ClientSession() as session:
            actions = [{"action": "add_node", "args": {"org": "org2", "key": k.public_key.hex(), "host": "127.0.0.1",
                                                       "port": port}} for k, port in ((FULL, f_port), (FULL2, f2_port))]
            txs = [make_tx(net.admins["org1"], chain_id, 0, "propose", {"actions": actions})]
            txs += [make_tx(net.admins[o], chain_id, 0, "vote", {"proposal": 1, "approve": True})
                    for o in ("org2", "org3")]
            for stx in txs:
                await post(session, validator, stx)
            for stx in txs:
                assert (await committed(session, validator, stx))["receipt"]["code"] == "ok"
            # the commit that listed it gave the validator a p2p transport; the full node follows
            assert not isinstance(validator.transport, NullTransport)
            await until("the full node follows", lambda: full.chain.height == validator.chain.height)
            assert full.chain.head == validator.chain.head
            st = validator.status()
            assert {s["key"] for s in st["full_nodes"]} >= {FULL.public_key.hex()}
            # the second full node follows too, and also asks the first one for blocks
            await until("the second full node follows", lambda: second.chain.head == validator.chain.head)
            await until("the first full node serves the second", lambda: any(
                s["key"] == FULL2.public_key.hex() and s["block_requests"] > 0 for s in full.status()["full_nodes"]))
            # a transaction posted to the full node is forwarded; ?wait= on the full node answers
            stx = make_tx(net.operators["org1"], chain_id, 0, "transfer",
                          {"to": net.operators["org2"].address, "amount": 5})
            assert (await post(session, full, stx))["status"] == "pending"
            on_full = await committed(session, full, stx)
            on_validator = await committed(session, validator, stx)
            assert on_full["block_hash"] == on_validator["block_hash"]
            fs = full.status()
            assert fs["blocks_behind"] == 0 and fs["best_peer_height"] == validator.chain.height
            assert full.health()["status"] == "ready", full.health()
            assert fs["follow"]["refused_blocks"] == 0
            metrics = full._render_metrics().decode()
            assert "cxl_validator 0.0" in metrics and "cxl_blocks_behind 0.0" in metrics
            assert "cxl_validator 1.0" in validator._render_metrics().decode()
            await until("both full nodes have a session to the validator",
                        lambda: len(validator.status()["full_nodes"]) == 2)
            assert "cxl_full_node_sessions 2.0" in validator._render_metrics().decode()
    finally:
        await second.stop()
        await full.stop()
        await validator.stop()


async def test_a_full_node_started_by_state_sync_follows_from_the_snapshot_height(tmp_path):
    """`cxl node start --state-sync` on a full node: it installs the validator's verified
    snapshot, then follows by certified block sync from the next height; its head, state
    root and reads are the validator's, and it refused no block."""
    net = make_testnet(n_validators=1, params={"block_interval_ms": 20, "heartbeat_interval_ms": 0})
    v_port = free_port()
    # the full node starts after two governance rounds: hold its port until then, or an
    # ephemeral client socket of this busy machine may take it meanwhile
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    f_port = held.getsockname()[1]
    doc, vhome = lone_validator_home(tmp_path, net, v_port)
    validator = Node(vhome, config=dataclasses.replace(load_config(vhome), api_port=0, metrics_port=0))
    await validator.start()
    chain_id = doc["chain_id"]
    full = None
    try:
        async with aiohttp.ClientSession() as session:
            actions = [{"action": "add_node", "args": {"org": "org2", "key": FULL.public_key.hex(),
                                                       "host": "127.0.0.1", "port": f_port}}]
            txs = [make_tx(net.admins["org1"], chain_id, 0, "propose", {"actions": actions})]
            txs += [make_tx(net.admins[o], chain_id, 0, "vote", {"proposal": 1, "approve": True})
                    for o in ("org2", "org3")]
            transfers = [make_tx(net.operators["org1"], chain_id, n, "transfer",
                                 {"to": net.operators["org2"].address, "amount": 1 + n}) for n in range(3)]
            for batch in (txs, transfers):  # two rounds: the transfers land in a later block
                for stx in batch:
                    await post(session, validator, stx)
                for stx in batch:
                    assert (await committed(session, validator, stx))["receipt"]["code"] == "ok"
            snapshot_at = validator.chain.height
            fhome = init_home(tmp_path / "f", tmp_path / "genesis.json", tmp_path / "f.json", p2p_port=f_port,
                              role="full", follow_interval_ms=50, state_sync=validator.api_url).path
            full = Node(fhome, config=dataclasses.replace(load_config(fhome), api_port=0, metrics_port=0))
            held.close()
            await full.start()
            assert full.chain.base_height == snapshot_at >= 2
            # the chain goes on; the state-synced full node follows it from the snapshot height
            stx = make_tx(net.operators["org1"], chain_id, 3, "transfer",
                          {"to": net.operators["org2"].address, "amount": 9})
            await post(session, validator, stx)
            await committed(session, validator, stx)
            await until("the state-synced full node follows", lambda: full.chain.head == validator.chain.head)
            assert full.chain.height > snapshot_at and full.status()["base_height"] == snapshot_at
            addr = net.operators["org2"].address
            async with session.get(full.api_url + f"/v1/accounts/{addr}") as r:
                ours = await r.json()
            async with session.get(validator.api_url + f"/v1/accounts/{addr}") as r:
                theirs = await r.json()
            assert ours["balance"] == theirs["balance"] and ours["nonce"] == theirs["nonce"]
            assert full.status()["follow"]["refused_blocks"] == 0
    finally:
        held.close()
        if full is not None:
            await full.stop()
        await validator.stop()
