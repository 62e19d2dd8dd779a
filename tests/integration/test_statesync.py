"""State sync against a real single-validator node: GET /v1/snapshot and its chunks, the
client rebuilding the tree at the certified height (same root as the node's), a tampering
peer's chunks refused and fetched from another, a wrong validator set refused."""

from __future__ import annotations

import base64
import dataclasses

import aiohttp
import pytest
from aiohttp import web

from genesis.schema import save as save_genesis
from genesis.testnet import make_testnet
from ledger import statetree
from ledger.keystore import write_key
from ledger.store.memory import MemoryStore
from ledger.tx import make_tx
from node.app import Node
from node.config import init_home, load_config
from node.statesync import StateSyncError, sync_snapshot

# no interval heartbeats: the genesis time is years ago, and these tests count blocks from 0
NET = make_testnet(n_validators=1, chain_id="cxl-statesync", params={"heartbeat_interval_ms": 0})
CHAIN = NET.doc["chain_id"]


@pytest.fixture
async def node(tmp_path):
    save_genesis(NET.doc, tmp_path / "genesis.json")
    write_key(tmp_path / "validator.json", NET.validators[0])
    home = tmp_path / "home"
    init_home(home, tmp_path / "genesis.json", tmp_path / "validator.json", api_port=1)
    n = Node(home, config=dataclasses.replace(load_config(home), api_port=0))
    await n.start()
    yield n
    await n.stop()


async def commit_some(node, count: int = 5) -> None:
    signer = NET.admins[sorted(NET.admins)[0]]
    async with aiohttp.ClientSession() as s:
        txs = [make_tx(signer, CHAIN, i, "transfer", {"to": NET.operators[sorted(NET.operators)[0]].address,
                                                      "amount": 1}) for i in range(count)]
        async with s.post(node.api_url + "/v1/txs", json={"txs": [base64.b64encode(t.raw).decode() for t in txs]}) as r:
            assert r.status == 200
        async with s.get(node.api_url + f"/v1/txs/{txs[-1].hash.hex()}?wait=10") as r:
            assert (await r.json())["status"] == "committed"


async def test_a_synced_tree_has_the_nodes_root_and_state(node):
    await commit_some(node)
    synced = await sync_snapshot(["http://127.0.0.1:1", node.api_url], CHAIN, node.chain.validator_keys, MemoryStore())
    h = synced.block.height
    assert synced.source == node.api_url and h >= 1
    assert synced.restored.root == statetree.root_hash(node.chain.store, h) == synced.block.header.state_root
    assert synced.restored.state == dict(statetree.iter_leaves(node.chain.store, h))


async def test_the_snapshot_api_answers_errors_as_json(node):
    async with aiohttp.ClientSession() as s:
        async with s.get(node.api_url + "/v1/snapshot") as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "no_snapshot"
        await commit_some(node, 1)
        async with s.get(node.api_url + "/v1/snapshot") as r:
            doc = await r.json()
        async with s.get(node.api_url + f"/v1/snapshot/{doc['height']}/chunks/{doc['chunks']}") as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "unknown_chunk"
        async with s.get(node.api_url + "/v1/snapshot/999999/chunks/0") as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "unknown_snapshot"
        async with s.get(node.api_url + "/v1/snapshot/x/chunks/0") as r:
            assert r.status == 400


async def tampering_proxy(real: str):
    """Serves the real manifest but flips a byte in every chunk."""
    async def manifest(request):
        async with aiohttp.ClientSession() as s, s.get(real + "/v1/snapshot") as r:
            return web.json_response(await r.json())

    async def chunk(request):
        async with aiohttp.ClientSession() as s, s.get(real + request.path) as r:
            body = bytearray(await r.read())
        body[-1] ^= 1
        return web.Response(body=bytes(body), content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/v1/snapshot", manifest)
    app.router.add_get("/v1/snapshot/{h}/chunks/{i}", chunk)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


async def test_tampered_chunks_are_refused_and_fetched_from_another_peer(node):
    await commit_some(node)
    runner, liar = await tampering_proxy(node.api_url)
    try:
        with pytest.raises(StateSyncError, match="tampered"):
            await sync_snapshot([liar], CHAIN, node.chain.validator_keys, MemoryStore())
        synced = await sync_snapshot([liar, node.api_url], CHAIN, node.chain.validator_keys, MemoryStore())
        assert synced.restored.root == synced.block.header.state_root
    finally:
        await runner.cleanup()


async def test_a_certificate_from_untrusted_validators_is_refused(node):
    await commit_some(node, 1)
    other = make_testnet(n_validators=1, chain_id="cxl-other").validators[0].public_key
    with pytest.raises(StateSyncError, match="not certified"):
        await sync_snapshot([node.api_url], CHAIN, [other], MemoryStore())
