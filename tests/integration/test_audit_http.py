"""Auditing over the client API: replay, receipts and node comparison against real HTTP servers.

Stub servers render chains built in the test with the node's own JSON views
(node.views), so the wire format is the real one; one test runs a real node.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import threading
from pathlib import Path

import pytest
from aiohttp import web
from click.testing import CliRunner

from audit.compare import compare_nodes
from audit.receipt import fetch_receipt, verify_receipt
from audit.replay import replay
from audit.source import HttpSource, SourceError, open_home
from audit.testchain import build_test_chain
from cli.audit import audit_group
from genesis.schema import save as save_genesis
from ledger.block import Block
from node import views


class StubNode:
    """Serves /v1/status, /v1/blocks/{h} and /v1/txs/{hash}/proof from a Chain, in a thread."""

    def __init__(self, chain, genesis_hash: bytes, *, patch_block=None, status_patch=None):
        self.chain, self.genesis_hash = chain, genesis_hash
        self.patch_block = patch_block or {}
        self.status_patch = status_patch or {}
        self.requests = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def status(self, request):
        self.requests += 1
        head = self.chain.head
        body = {"chain_id": self.chain.chain_id, "genesis_hash": self.genesis_hash.hex(), "height": head.height,
                "head_hash": head.block_hash.hex(), "state_root": head.state_root.hex(), "time_ms": head.time_ms}
        body.update(self.status_patch)
        return web.json_response(body)

    async def block(self, request):
        self.requests += 1
        h = int(request.match_info["height"])
        block = self.chain.get_block(h)
        if block is None or h > self.chain.height:
            return web.json_response({"error": {"code": "unknown_block", "message": "no block"}}, status=404)
        body = views.block_view(block, self.chain.get_cert(h))
        if h in self.patch_block:
            body["block"] = base64.b64encode(self.patch_block[h]).decode()
        return web.json_response(body)

    async def proof(self, request):
        tx_hash = bytes.fromhex(request.match_info["hash"])
        proof = self.chain.tx_proof(tx_hash)
        if proof is None:
            return web.json_response({"error": {"code": "unknown_tx", "message": "no tx"}}, status=404)
        return web.json_response(views.proof_view(proof, tx_hash))

    def _run(self):
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.add_routes([web.get("/v1/status", self.status), web.get("/v1/blocks/{height}", self.block),
                        web.get("/v1/txs/{hash}/proof", self.proof)])
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self):
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        fut.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="module")
def bc():
    return build_test_chain(blocks=30)


def test_replay_over_http_with_validator_changes(bc):
    with StubNode(bc.chain, bc.net.genesis_hash) as node:
        report = replay(HttpSource(node.url), bc.net.doc, bc.net.genesis_hash, workers=2)
    assert report.ok, report.text()
    assert (report.blocks, report.transactions) == (30, len(bc.tx_hashes))
    assert [c.height for c in report.validator_changes] == [7, 17]
    assert report.source == f"node {node.url}"


def test_replay_over_http_names_a_tampered_block(bc):
    raw = bc.chain.get_block_raw(12)
    block = Block.decode(raw)
    swapped = Block(block.header, (block.txs[1], block.txs[0]) + block.txs[2:], block.last_cert).encode()
    with StubNode(bc.chain, bc.net.genesis_hash, patch_block={12: swapped}) as node:
        report = replay(HttpSource(node.url), bc.net.doc, bc.net.genesis_hash, workers=1)
    assert (report.failure.height, report.failure.code) == (12, "bad_txs_root")


def test_replay_over_http_checks_the_reported_head(bc):
    with StubNode(bc.chain, bc.net.genesis_hash, status_patch={"state_root": "00" * 32}) as node:
        report = replay(HttpSource(node.url), bc.net.doc, bc.net.genesis_hash, workers=1)
    assert (report.failure.height, report.failure.code) == (30, "head_mismatch")


def test_replay_over_http_refuses_another_genesis(bc):
    with StubNode(bc.chain, b"\x01" * 32) as node:
        report = replay(HttpSource(node.url), bc.net.doc, bc.net.genesis_hash, workers=1)
    assert (report.failure.height, report.failure.code) == (0, "wrong_genesis")


def test_unreachable_node():
    with pytest.raises(SourceError) as err:
        HttpSource("http://127.0.0.1:9").head_height()
    assert err.value.code == "unreachable"


def test_fetch_receipt_proves_validator_changes(bc):
    with StubNode(bc.chain, bc.net.genesis_hash) as node:
        receipt = fetch_receipt(node.url, bc.tx_hashes[-1], genesis_doc=bc.net.doc,
                                genesis_hash=bc.net.genesis_hash, workers=1)
        early = fetch_receipt(node.url, bc.tx_hashes[0].hex())
    summary = verify_receipt(json.loads(json.dumps(receipt)), bc.net.doc, bc.net.genesis_hash)
    assert summary["validator_changes_walked"] == [7, 17] and summary["code"] == "ok"
    assert verify_receipt(early, bc.net.doc, bc.net.genesis_hash)["height"] == 1


def _forked(at: int, blocks: int):
    """The same deterministic chain up to `at - 1`, then different transfers."""
    fork = build_test_chain(blocks=at - 1)
    ops = [fork.net.operators[o] for o in sorted(fork.net.operators)]
    for _ in range(at, blocks + 1):
        fork.add_block([fork.tx(ops[0], "transfer", {"to": ops[1].address, "amount": 77})])
    return fork


def test_compare_agreeing_and_forked_nodes(bc, tmp_path):
    fork = _forked(18, 25)
    short = build_test_chain(blocks=20)
    with StubNode(bc.chain, bc.net.genesis_hash) as a, StubNode(short.chain, bc.net.genesis_hash) as b, \
            StubNode(fork.chain, bc.net.genesis_hash) as c:
        same = compare_nodes([a.url, b.url])
        assert same.ok and same.common_height == 20 and same.heights == {a.url: 30, b.url: 20}
        diff = compare_nodes([a.url, b.url, c.url])
        assert (diff.ok, diff.first_difference, diff.confirmed) == (False, 18, True)
        assert diff.hashes[a.url] == bc.chain.get_block(18).hash.hex() != diff.hashes[c.url]
        assert diff.requests < 3 * 12  # a binary search, not a scan

        runner = CliRunner()
        out = runner.invoke(audit_group, ["compare", a.url, c.url, "--json"])
        assert out.exit_code == 1 and json.loads(out.output)["first_difference"] == 18
        out = runner.invoke(audit_group, ["compare", a.url, b.url])
        assert out.exit_code == 0 and "agree on all 20 common blocks" in out.output

        save_genesis(bc.net.doc, tmp_path / "genesis.json")
        out = runner.invoke(audit_group, ["replay", "--genesis", str(tmp_path / "genesis.json"), "--node", a.url, "--json"])
        assert out.exit_code == 0 and json.loads(out.output)["blocks"] == 30
        # the fork is a valid chain on its own (both were certified): only comparing shows it
        out = runner.invoke(audit_group, ["replay", "--genesis", str(tmp_path / "genesis.json"), "--node", c.url])
        assert out.exit_code == 0 and "result:        OK" in out.output

        out = runner.invoke(audit_group, ["receipt", bc.tx_hashes[-1].hex(), "--genesis", str(tmp_path / "genesis.json"),
                                          "--node", a.url, "-o", str(tmp_path / "r.json")])
        assert out.exit_code == 0, out.output
    out = runner.invoke(audit_group, ["verify-receipt", str(tmp_path / "r.json"), "--genesis", str(tmp_path / "genesis.json")])
    assert out.exit_code == 0 and "heights [7, 17]" in out.output


def test_cli_needs_exactly_one_source(tmp_path, bc):
    save_genesis(bc.net.doc, tmp_path / "genesis.json")
    out = CliRunner().invoke(audit_group, ["replay", "--genesis", str(tmp_path / "genesis.json")])
    assert out.exit_code == 2 and "exactly one of --home" in out.output


# --- a real node ------------------------------------------------------------------------------


async def test_real_node_replays_over_api_and_from_its_home_once_stopped(tmp_path):
    from genesis.testnet import make_testnet
    from ledger.keystore import write_key
    from ledger.tx import make_tx
    from node.app import Node
    from node.config import init_home, load_config
    import aiohttp

    net = make_testnet(n_validators=1)
    save_genesis(net.doc, tmp_path / "genesis.json")
    write_key(tmp_path / "validator.json", net.validators[0])
    home = tmp_path / "home"
    init_home(home, tmp_path / "genesis.json", tmp_path / "validator.json", api_port=1)
    node = Node(home, config=dataclasses.replace(load_config(home), api_port=0))
    await node.start()
    try:
        admin, op = net.admins["org1"], net.operators["org2"]
        txs = [make_tx(admin, net.doc["chain_id"], i, "transfer", {"to": op.address, "amount": 3}) for i in range(20)]
        async with aiohttp.ClientSession() as s:
            async with s.post(node.api_url + "/v1/txs", json={"txs": [base64.b64encode(t.raw).decode() for t in txs]}) as r:
                assert r.status in (200, 202), await r.text()
            async with s.get(node.api_url + f"/v1/txs/{txs[-1].hash.hex()}?wait=10") as r:
                assert (await r.json())["status"] == "committed"
        report = await asyncio.to_thread(replay, HttpSource(node.api_url), net.doc, net.genesis_hash, workers=2)
        assert report.ok, report.text()
        assert report.transactions == 20
        receipt = await asyncio.to_thread(fetch_receipt, node.api_url, txs[5].hash, genesis_doc=net.doc,
                                          genesis_hash=net.genesis_hash)
        assert verify_receipt(receipt, net.doc, net.genesis_hash)["tx_hash"] == txs[5].hash.hex()
        with pytest.raises(SourceError) as err:
            open_home(home)
        assert err.value.code == "store_locked"
    finally:
        await node.stop()
    with open_home(home) as source:
        report = replay(source, net.doc, net.genesis_hash, workers=1)
    assert report.ok, report.text()
    assert report.transactions == 20
