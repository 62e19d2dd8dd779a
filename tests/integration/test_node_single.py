"""A real single-validator node: LevelDB in a temp dir, the client API on a free
127.0.0.1 port, the real consensus core. What a client sees: transactions commit with
receipts, every bad input gets the right status and code and changes nothing, and a
restarted node resumes where it stopped without ever signing a different block."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from genesis.schema import save as save_genesis
from genesis.testnet import make_testnet
from ledger.chain import Chain
from ledger.keystore import write_key
from ledger.merkle import verify_inclusion
from ledger.store.leveldb import LevelDBStore
from ledger.tx import make_tx

from consensus.state import SignedState
from node.app import Node
from node.config import init_home, load_config
from node.runner import WAL_PROPOSAL, WAL_SIGNED, load_signed_state

ROOT = Path(__file__).resolve().parents[2]
# no interval heartbeats: the genesis time is years before the wall clock, so with the
# default heartbeat_interval_ms each node would start with an empty block and the heights
# these tests check would be off by one (the heartbeat test below uses the default)
NET = make_testnet(n_validators=1, params={"heartbeat_interval_ms": 0})
CHAIN_ID = NET.doc["chain_id"]
ADMIN = NET.admins["org1"]
OP2 = NET.operators["org2"]


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def transfer(signer, nonce, amount=5, to=None, chain=CHAIN_ID):
    return make_tx(signer, chain, nonce, "transfer", {"to": to or OP2.address, "amount": amount})


def make_home(tmp_path: Path, net=NET, **settings) -> Path:
    save_genesis(net.doc, tmp_path / "genesis.json")
    write_key(tmp_path / "validator.json", net.validators[0])
    home = tmp_path / "home"
    init_home(home, tmp_path / "genesis.json", tmp_path / "validator.json", api_port=1, **settings)
    return home


async def start(home: Path, **overrides) -> Node:
    cfg = dataclasses.replace(load_config(home), api_port=0, **overrides)
    node = Node(home, config=cfg)
    await node.start()
    return node


class Client:
    def __init__(self, node: Node, session: aiohttp.ClientSession):
        self.url = node.api_url
        self.s = session

    async def get(self, path: str):
        async with self.s.get(self.url + path) as r:
            return r.status, await r.json()

    async def post(self, path: str, body=None, data: bytes | None = None):
        kw = {"json": body} if data is None else {"data": data}
        async with self.s.post(self.url + path, **kw) as r:
            return r.status, await r.json()

    async def submit(self, stx):
        return await self.post("/v1/txs", {"tx": b64(stx.raw)})

    async def wait(self, stx, seconds=10):
        status, body = await self.get(f"/v1/txs/{stx.hash.hex()}?wait={seconds}")
        assert status == 200 and body["status"] == "committed", body
        return body


@pytest.fixture
async def node(tmp_path):
    n = await start(make_home(tmp_path))
    yield n
    await n.stop()


@pytest.fixture
async def client(node):
    async with aiohttp.ClientSession() as s:
        yield Client(node, s)


async def balance(client, address) -> int:
    return (await client.get(f"/v1/accounts/{address}"))[1]["balance"]


# -- the happy path ---------------------------------------------------------------------

async def test_single_transfer_commits_with_receipt_and_proof(node, client):
    before = await balance(client, OP2.address)
    t = transfer(ADMIN, 0, amount=7)
    status, body = await client.submit(t)
    assert status == 202 and body == {"hash": t.hash.hex(), "status": "pending"}
    done = await client.wait(t)
    assert done["receipt"]["code"] == "ok" and done["height"] == 1 and done["index"] == 0
    assert done["tx"]["sender_address"] == ADMIN.address and done["tx"]["payload"]["amount"] == 7
    assert await balance(client, OP2.address) == before + 7
    acct = (await client.get(f"/v1/accounts/{ADMIN.address}"))[1]
    assert acct["nonce"] == 1 and acct["member"]["org"] == "org1"

    status, proof = await client.get(f"/v1/txs/{t.hash.hex()}/proof")
    assert status == 200
    header_raw = base64.b64decode(proof["header_raw"])
    assert bytes.fromhex(proof["header"]["bytes"]) == header_raw
    assert verify_inclusion(bytes.fromhex(proof["tx"]), proof["index"], proof["tx_count"],
                            [bytes.fromhex(p) for p in proof["tx_proof"]], bytes.fromhex(proof["header"]["txs_root"]))
    assert proof["certificate"]["block_hash"] == done["block_hash"]

    status, blk = await client.get("/v1/blocks/latest")
    assert status == 200 and blk["height"] == 1 and blk["txs"] == [t.hash.hex()]
    assert blk["certificate"]["signatures"][0]["key"] == NET.validators[0].public_key.hex()
    assert (await client.get(f"/v1/blocks/{blk['hash']}"))[1]["height"] == 1

    status, st = await client.get("/v1/status")
    assert st["height"] == 1 and st["chain_id"] == CHAIN_ID and st["primary"] == st["node_key"]
    assert st["mempool"]["txs"] == 0 and st["genesis_hash"] == NET.genesis_hash.hex()


async def test_batch_commits_every_tx(node, client):
    txs = [transfer(ADMIN, n) for n in range(30)] + [transfer(NET.operators["org3"], n) for n in range(10)]
    status, body = await client.post("/v1/txs", {"txs": [b64(t.raw) for t in txs]})
    assert status == 200
    assert [r["hash"] for r in body["results"]] == [t.hash.hex() for t in txs]
    assert all(r["status"] == "pending" for r in body["results"])
    for t in txs:
        assert (await client.wait(t))["receipt"]["code"] == "ok"
    assert (await client.get(f"/v1/accounts/{ADMIN.address}"))[1]["nonce"] == 30
    # resubmitting a committed transaction says so, and changes nothing
    status, body = await client.submit(txs[0])
    assert status == 200 and body["status"] == "committed"


async def test_batch_answers_each_item(node, client):
    good = transfer(ADMIN, 0)
    stranger = make_tx(NET.validators[0], CHAIN_ID, 0, "transfer", {"to": OP2.address, "amount": 1})
    status, body = await client.post("/v1/txs", {"txs": [b64(good.raw), "***", b64(stranger.raw), b64(b"\x01")]})
    assert status == 200
    codes = [r.get("status") or r["error"]["code"] for r in body["results"]]
    assert codes == ["pending", "bad_base64", "unknown_sender", "bad_encoding"]
    await client.wait(good)


async def test_overspend_commits_with_insufficient_funds(node, client):
    before = await balance(client, OP2.address)
    t = transfer(ADMIN, 0, amount=10**15)
    assert (await client.submit(t))[0] == 202
    done = await client.wait(t)
    assert done["receipt"]["code"] == "insufficient_funds"
    assert await balance(client, OP2.address) == before
    assert (await client.get(f"/v1/accounts/{ADMIN.address}"))[1]["nonce"] == 1  # nonce consumed


async def test_transfer_to_a_whitespace_address_burns_nothing(node, client):
    """bytes.fromhex skips whitespace: "cx" + 40 spaces used to commit `ok` and burn the credits."""
    before = await balance(client, ADMIN.address)
    t = transfer(ADMIN, 0, amount=9, to="cx" + " " * 40)
    assert (await client.submit(t))[0] == 202
    done = await client.wait(t)
    assert done["receipt"]["code"] == "bad_address"
    assert await balance(client, ADMIN.address) == before
    for text in ("cx" + "%20" * 40, "cx" + "%09" * 40, "%20" + ADMIN.address[1:], ADMIN.address + "%20",
                 "cx" + "%D9%A0" * 40):  # U+0660 ARABIC-INDIC DIGIT ZERO
        status, body = await client.get(f"/v1/accounts/{text}")
        assert (status, body["error"]["code"]) == (400, "bad_address"), text
        status, body = await client.get(f"/v1/accounts/{text}/market")
        assert (status, body["error"]["code"]) == (400, "bad_address"), text
        status, body = await client.get(f"/v1/leases?tenant={text}")
        assert (status, body["error"]["code"]) == (400, "bad_query"), text


async def test_a_typo_or_old_form_address_is_refused_and_burns_nothing(node, client):
    """One mistyped character fails the bech32 checksum: the transfer fails, credits stay."""
    from ledger.crypto import address_payload
    good = ADMIN.address
    typo = good[:10] + ("q" if good[10] != "q" else "p") + good[11:]
    old = "cx" + address_payload(good).hex()
    before = await balance(client, ADMIN.address)
    t = transfer(ADMIN, 0, amount=9, to=typo)
    assert (await client.submit(t))[0] == 202
    done = await client.wait(t)
    assert done["receipt"]["code"] == "bad_address" and "checksum" in done["receipt"]["message"]
    assert await balance(client, ADMIN.address) == before
    status, body = await client.get(f"/v1/accounts/{typo}")
    assert (status, body["error"]["code"]) == (400, "bad_address") and "checksum" in body["error"]["message"]
    status, body = await client.get(f"/v1/accounts/{old}")
    assert (status, body["error"]["code"]) == (400, "old_address_form") and good in body["error"]["message"]
    status, body = await client.get(f"/v1/accounts/{good}")
    assert status == 200 and body["address"] == good


async def test_nonce_gap_waits_then_commits(node, client):
    t0, t1 = transfer(ADMIN, 0), transfer(ADMIN, 1)
    assert (await client.submit(t1))[0] == 202
    await asyncio.sleep(0.4)  # several block intervals: nothing to commit yet
    status, body = await client.get(f"/v1/txs/{t1.hash.hex()}")
    assert status == 200 and body["status"] == "pending" and body["ready"] is False
    assert (await client.get("/v1/status"))[1]["height"] == 0
    assert (await client.submit(t0))[0] == 202
    assert (await client.wait(t1))["receipt"]["code"] == "ok"
    assert (await client.wait(t0))["height"] <= (await client.wait(t1))["height"]


# -- bad inputs: right status and code, nothing changes ---------------------------------------

def _mutate_sig(raw: bytes) -> bytes:
    return raw[:-1] + bytes([raw[-1] ^ 0x01])


BAD_INPUTS = [
    ("malformed json", None, b"{not json", 400, "bad_json"),
    ("neither tx nor txs", {"foo": 1}, None, 400, "bad_request"),
    ("malformed base64", {"tx": "@@not-base64@@"}, None, 400, "bad_base64"),
    ("malformed msgpack", {"tx": b64(b"\x93\x01\x02")}, None, 400, "bad_encoding"),
    ("trailing bytes", {"tx": b64(transfer(ADMIN, 0).raw + b"\x00")}, None, 400, "bad_encoding"),
    ("bad signature", {"tx": b64(_mutate_sig(transfer(ADMIN, 0).raw))}, None, 401, "bad_signature"),
    ("wrong chain id", {"tx": b64(transfer(ADMIN, 0, chain="other-chain").raw)}, None, 422, "wrong_chain"),
    ("unknown sender", {"tx": b64(make_tx(NET.validators[0], CHAIN_ID, 0, "transfer",
                                          {"to": OP2.address, "amount": 1}).raw)}, None, 403, "unknown_sender"),
    ("nonce too far ahead", {"tx": b64(transfer(ADMIN, 5000).raw)}, None, 422, "nonce_too_far"),
]


@pytest.mark.parametrize("name,body,data,status,code", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
async def test_bad_input_is_refused_and_changes_nothing(node, client, name, body, data, status, code):
    before = (await client.get("/v1/status"))[1]
    got_status, got = await client.post("/v1/txs", body, data=data)
    assert got_status == status, got
    assert got["error"]["code"] == code and got["error"]["message"]
    after = (await client.get("/v1/status"))[1]
    assert after["mempool"] == before["mempool"] and after["height"] == before["height"]
    assert after["state_root"] == before["state_root"]


async def test_nonce_reuse_and_conflict_are_409(node, client):
    t = transfer(ADMIN, 0)
    assert (await client.submit(t))[0] == 202
    await client.wait(t)
    status, body = await client.submit(transfer(ADMIN, 0, amount=6))  # nonce 0 is used now
    assert status == 409 and body["error"]["code"] == "nonce_used"
    late = transfer(ADMIN, 3)
    assert (await client.submit(late))[0] == 202  # waits for nonces 1, 2
    status, body = await client.submit(transfer(ADMIN, 3, amount=99))
    assert status == 409 and body["error"]["code"] == "nonce_conflict"
    assert (await client.get("/v1/status"))[1]["mempool"]["txs"] == 1


async def test_expired_tx_is_422_and_never_stalls_the_chain(node, client):
    t = transfer(ADMIN, 0)
    await client.submit(t)
    await client.wait(t)  # height 1: the next block is 2
    old = make_tx(ADMIN, CHAIN_ID, 1, "transfer", {"to": OP2.address, "amount": 1}, expiry=1)
    status, body = await client.submit(old)
    assert status == 422 and body["error"]["code"] == "expired"
    fresh = make_tx(ADMIN, CHAIN_ID, 1, "transfer", {"to": OP2.address, "amount": 1}, expiry=2)
    assert (await client.submit(fresh))[0] == 202
    assert (await client.wait(fresh))["height"] == 2


async def test_oversize_body_is_413(tmp_path):
    node = await start(make_home(tmp_path), max_body_bytes=4096)
    try:
        async with aiohttp.ClientSession() as s:
            c = Client(node, s)
            status, body = await c.post("/v1/txs", {"tx": "A" * 8000})
            assert status == 413 and body["error"]["code"] == "body_too_large"
            assert (await c.get("/v1/status"))[1]["mempool"]["txs"] == 0
    finally:
        await node.stop()


async def test_full_mempool_answers_429_and_503(tmp_path):
    node = await start(make_home(tmp_path), block_interval_ms=3_600_000, mempool_max_txs=5,
                       mempool_max_per_sender=3)
    try:
        async with aiohttp.ClientSession() as s:
            c = Client(node, s)
            for n in range(3):
                assert (await c.submit(transfer(ADMIN, n)))[0] == 202
            status, body = await c.submit(transfer(ADMIN, 3))
            assert status == 429 and body["error"]["code"] == "sender_quota"
            for n in range(2):
                assert (await c.submit(transfer(OP2, n)))[0] == 202
            status, body = await c.submit(transfer(NET.operators["org3"], 0))
            assert status == 503 and body["error"]["code"] == "mempool_full"
            assert (await c.get("/v1/status"))[1]["mempool"]["txs"] == 5
    finally:
        await node.stop()


async def test_unknown_and_malformed_lookups(node, client):
    assert (await client.get("/v1/txs/" + "ab" * 32)) == (404, {"error": {
        "code": "unknown_tx", "message": f"transaction {'ab' * 32} is neither pending on this node nor committed"}})
    assert (await client.get("/v1/txs/xyz"))[1]["error"]["code"] == "bad_hash"
    assert (await client.get("/v1/txs/" + "ab" * 32 + "?wait=soon"))[1]["error"]["code"] == "bad_wait"
    assert (await client.get("/v1/txs/" + "ab" * 32 + "/proof"))[1]["error"]["code"] == "unknown_tx"
    assert (await client.get("/v1/blocks/0"))[1]["error"]["code"] == "unknown_block"
    assert (await client.get("/v1/blocks/7"))[0] == 404
    assert (await client.get("/v1/blocks/-1"))[0] == 400
    assert (await client.get("/v1/accounts/nope"))[0] == 400
    status, body = await client.get("/v1/nothing-here")
    assert status == 404 and body["error"]["code"] == "not_found"
    async with client.s.delete(client.url + "/v1/status") as r:
        assert r.status == 405 and (await r.json())["error"]["code"] == "method_not_allowed"
    t0 = time.monotonic()
    status, _ = await client.get("/v1/txs/" + "cd" * 32 + "?wait=0.3")
    assert status == 404 and time.monotonic() - t0 >= 0.25


async def test_validators_openapi_and_metrics(node, client):
    assert await client.get("/v1/evidence") == (200, {"count": 0, "evidence": []})
    status, vals = await client.get("/v1/validators")
    assert status == 200 and vals["quorum"] == 1
    assert vals["validators"][0]["key"] == NET.validators[0].public_key.hex()
    status, doc = await client.get("/v1/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    assert {"/v1/status", "/v1/txs", "/v1/txs/{hash}", "/v1/blocks/{height}"} <= set(doc["paths"])
    t = transfer(ADMIN, 0)
    await client.submit(t)
    await client.wait(t)
    async with client.s.get(node.metrics_url + "/metrics") as r:
        text = await r.text()
    assert r.status == 200 and "cxl_height 1.0" in text and "cxl_txs_committed_total 1.0" in text
    assert "cxl_commit_latency_seconds_count 1.0" in text


async def test_a_lone_validator_makes_a_heartbeat_block_when_one_is_due(tmp_path):
    """The default heartbeat_interval_ms (60 s) has long passed since this genesis: the
    node's first block is an empty heartbeat; the next is not due for a minute."""
    net = make_testnet(n_validators=1)
    node = await start(make_home(tmp_path, net=net))
    try:
        deadline = time.monotonic() + 30
        while node.chain.height < 1:
            assert time.monotonic() < deadline, "no heartbeat block"
            await asyncio.sleep(0.05)
        block = node.chain.get_block(1)
        assert block.txs == () and node.chain.heartbeat_due(block.header.time_ms + 59_999) is None
        assert node.chain.next_heartbeat_ms() == block.header.time_ms + 60_000
        assert node.chain.height == 1
    finally:
        await node.stop()


# -- restarts ------------------------------------------------------------------------------------

async def test_restart_resumes_and_keeps_committing(tmp_path):
    home = make_home(tmp_path)
    node = await start(home)
    async with aiohttp.ClientSession() as s:
        c = Client(node, s)
        for n in range(3):
            t = transfer(ADMIN, n)
            await c.submit(t)
            await c.wait(t)
        st1 = (await c.get("/v1/status"))[1]
        blocks1 = [(await c.get(f"/v1/blocks/{h}"))[1]["hash"] for h in range(1, st1["height"] + 1)]
    await node.stop()
    assert st1["height"] >= 1

    node = await start(home)
    try:
        async with aiohttp.ClientSession() as s:
            c = Client(node, s)
            st2 = (await c.get("/v1/status"))[1]
            assert (st2["height"], st2["head_hash"], st2["state_root"]) == \
                   (st1["height"], st1["head_hash"], st1["state_root"])
            t = transfer(ADMIN, 3)
            assert (await c.submit(t))[0] == 202
            assert (await c.wait(t))["height"] == st1["height"] + 1
            blocks2 = [(await c.get(f"/v1/blocks/{h}"))[1]["hash"] for h in range(1, st1["height"] + 1)]
            assert blocks2 == blocks1
        rec = load_signed_state(node.store)
        assert rec.height == st1["height"] + 1
    finally:
        await node.stop()


async def test_restart_after_crash_finishes_the_signed_block_not_another(tmp_path):
    """Crash window: the validator signed a pre-prepare for block X at height 1 (WAL
    synced) and died before committing. On restart it must commit exactly X, even though
    other transactions are waiting that would make a different block."""
    home = make_home(tmp_path)
    store = LevelDBStore(home / "data")
    chain = Chain(store, NET.doc, NET.genesis_hash)
    signed_tx = transfer(ADMIN, 0, amount=11)
    block, _ = chain.build_block([signed_tx], time_ms=int(time.time() * 1000), view=0,
                                 proposer=NET.validators[0].public_key, last_cert=None)
    from ledger.encoding import encode
    store.write({WAL_PROPOSAL: encode([1, 0, block.encode()]),
                 WAL_SIGNED: SignedState(1, 0, (("pp", block.hash),)).encode()}, sync=True)
    store.close()

    node = await start(home)
    try:
        async with aiohttp.ClientSession() as s:
            c = Client(node, s)
            other = transfer(OP2, 0, to=ADMIN.address)
            await c.submit(other)
            done = await c.wait(signed_tx)
            assert done["height"] == 1 and done["block_hash"] == block.hash.hex()
            assert (await c.wait(other))["height"] == 2
    finally:
        await node.stop()


# -- a real process ------------------------------------------------------------------------------------

def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_python_m_node_runs_and_stops_on_sigterm(tmp_path):
    home = make_home(tmp_path)
    cfg = json.loads((home / "config.json").read_text())
    cfg["api_port"] = _free_port()
    (home / "config.json").write_text(json.dumps(cfg))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "node", str(home)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=str(ROOT), text=True)
    try:
        line = proc.stdout.readline()
        started = json.loads(line)
        assert started["event"] == "started"
        import urllib.request
        t = transfer(ADMIN, 0)
        req = urllib.request.Request(started["api"] + "/v1/txs", data=json.dumps({"tx": b64(t.raw)}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 202
        with urllib.request.urlopen(f"{started['api']}/v1/txs/{t.hash.hex()}?wait=10", timeout=20) as r:
            assert json.loads(r.read())["status"] == "committed"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log_lines = (home / "node.log").read_text().splitlines()
    assert any(json.loads(x)["msg"].startswith("committed block 1") for x in log_lines)
    store = LevelDBStore(home / "data")  # closed cleanly: the lock is free
    try:
        assert Chain(store, NET.doc, NET.genesis_hash).height == 1
    finally:
        store.close()


async def test_stop_answers_long_polls_instead_of_hanging(tmp_path):
    node = await start(make_home(tmp_path), block_interval_ms=3_600_000)
    async with aiohttp.ClientSession() as s:
        c = Client(node, s)
        t = transfer(ADMIN, 0)
        assert (await c.submit(t))[0] == 202
        poll = asyncio.create_task(c.get(f"/v1/txs/{t.hash.hex()}?wait=30"))
        await asyncio.sleep(0.2)
        t0 = time.monotonic()
        await node.stop()
        status, body = await asyncio.wait_for(poll, 5)
        assert status == 200 and body["status"] == "pending"
        assert time.monotonic() - t0 < 5


async def test_api_is_extensible_and_errors_keep_their_shape(tmp_path):
    from aiohttp import web
    from node import api
    from node.errors import NotFound
    from node.openapi import add_openapi_paths

    async def listing(request):
        node = request.app[api.NODE]
        if request.match_info["id"] != "1":
            raise NotFound("no such thing", "unknown_thing")
        return api.json_response({"id": 1, "height": node.chain.height})

    async def boom(request):
        raise RuntimeError("bug")

    def ext(app, node):
        api.add_routes(app, [web.get("/v1/test-extension/{id}", listing)])
        add_openapi_paths(app, {"/v1/test-extension/{id}": {"get": {"responses": {"200": {"description": "x"}}}}})

    api.register_extension(ext)
    try:
        home = make_home(tmp_path)
        node = Node(home, config=dataclasses.replace(load_config(home), api_port=0),
                    extra_routes=[web.get("/v1/boom", boom)])
        await node.start()
    finally:
        api._EXTENSIONS.remove(ext)
    try:
        async with aiohttp.ClientSession() as s:
            c = Client(node, s)
            assert await c.get("/v1/test-extension/1") == (200, {"id": 1, "height": 0})
            status, body = await c.get("/v1/test-extension/2")
            assert status == 404 and body["error"]["code"] == "unknown_thing"
            status, body = await c.get("/v1/boom")
            assert status == 500 and body["error"]["code"] == "internal"
            assert "/v1/test-extension/{id}" in (await c.get("/v1/openapi.json"))[1]["paths"]
    finally:
        await node.stop()


async def test_busy_api_port_is_a_clear_error(tmp_path):
    import socket

    from node.errors import ConfigError

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        home = make_home(tmp_path)
        node = Node(home, config=dataclasses.replace(load_config(home), api_port=port))
        with pytest.raises(ConfigError, match="client API"):
            await node.start()
    node2 = await start(home)  # the failed start released the store
    await node2.stop()


async def test_at_the_connection_limit_the_longest_idle_connection_makes_room(tmp_path):
    node = await start(make_home(tmp_path), max_connections=2)
    conns = []
    try:
        for _ in range(2):
            conns.append(await asyncio.open_connection("127.0.0.1", node.api_port))
        await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection("127.0.0.1", node.api_port)
        conns.append((reader, writer))
        writer.write(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 200")  # the newcomer is served
        refused = await asyncio.wait_for(conns[0][0].read(), 2)  # the oldest idle one was closed for it
        assert refused.startswith(b"HTTP/1.1 503") and b'"too_many_connections"' in refused
        r1, w1 = conns[1]
        w1.write(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await asyncio.wait_for(r1.read(), 5)).startswith(b"HTTP/1.1 200")
    finally:
        for _, w in conns:
            w.close()
        await node.stop()


async def test_second_node_on_the_same_home_is_refused_clearly(node):
    from node.errors import ConfigError

    other = Node(node.home.path, config=dataclasses.replace(node.config, api_port=0))
    with pytest.raises(ConfigError) as e:
        await other.start()
    assert e.value.code == "store_locked" and "another node" in e.value.message
    assert node.chain.height == 0 and node.store is not None  # the running node is unaffected


async def test_large_batch_keeps_order_across_check_threads(node, client):
    txs = [transfer(ADMIN, n) for n in range(150)] + [transfer(NET.operators["org3"], n) for n in range(150)]
    txs.insert(100, transfer(ADMIN, 0, amount=2))  # conflicts with nonce 0 already in this batch
    status, body = await client.post("/v1/txs", {"txs": [b64(t.raw) for t in txs]})
    assert status == 200 and len(body["results"]) == 301
    assert [r["hash"] for r in body["results"]] == [t.hash.hex() for t in txs]
    assert body["results"][100]["error"]["code"] == "nonce_conflict"
    await client.wait(txs[-1])
    await client.wait(txs[99])
    assert (await client.get(f"/v1/accounts/{ADMIN.address}"))[1]["nonce"] == 150


def _spawn(home: Path) -> tuple[subprocess.Popen, dict]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "node", str(home)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env, cwd=str(ROOT), text=True)
    return proc, json.loads(proc.stdout.readline())


def _http(method: str, url: str, body: dict | None = None, timeout: float = 10):
    import urllib.error
    import urllib.request
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.slow
def test_sigkill_mid_stream_then_restart_keeps_one_consistent_chain(tmp_path):
    home = make_home(tmp_path)
    cfg = json.loads((home / "config.json").read_text())
    cfg["api_port"] = _free_port()
    (home / "config.json").write_text(json.dumps(cfg))
    proc, started = _spawn(home)
    api = started["api"]
    try:
        for batch in range(4):
            txs = [transfer(ADMIN, batch * 25 + n) for n in range(25)]
            status, _ = _http("POST", api + "/v1/txs", {"txs": [b64(t.raw) for t in txs]})
            assert status == 200
        time.sleep(0.15)  # some blocks committed, some txs still in flight
        proc.kill()  # no clean shutdown: the store is left as the crash left it
        proc.wait(timeout=10)
        proc, started = _spawn(home)
        status, st = _http("GET", api + "/v1/status")
        h = st["height"]
        assert status == 200 and h >= 1
        nonce = _http("GET", api + f"/v1/accounts/{ADMIN.address}")[1]["nonce"]
        # the mempool died with the process: resubmit what did not commit; old ones answer 409
        txs = [transfer(ADMIN, n) for n in range(nonce, 100)]
        if txs:
            status, body = _http("POST", api + "/v1/txs", {"txs": [b64(t.raw) for t in txs]})
            assert all(r.get("status") == "pending" for r in body["results"])
            status, done = _http("GET", api + f"/v1/txs/{txs[-1].hash.hex()}?wait=10", timeout=20)
            assert done["status"] == "committed"
        assert _http("POST", api + "/v1/txs", {"tx": b64(transfer(ADMIN, 0).raw)})[0] in (200, 409)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # the chain on disk replays from genesis to the same head
    store = LevelDBStore(home / "data")
    try:
        chain = Chain(store, NET.doc, NET.genesis_hash)
        replay = NET.chain()
        for height in range(1, chain.height + 1):
            block, cert = chain.get_block(height), chain.get_cert(height)
            replay.apply_certified(block, cert)
        assert replay.head == chain.head
        from ledger import accounts
        assert accounts.next_nonce(chain.state(), ADMIN.address) == 100
    finally:
        store.close()


async def test_validator_set_change_by_governance_starts_the_p2p_transport_of_a_lone_validator(tmp_path, caplog):
    """A node that started as the only validator (no p2p transport) gets a real one, with
    no restart, once governance grows the set."""
    import socket

    from ledger.crypto import Signer
    from node.transport import NullTransport

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        p2p_port = sock.getsockname()[1]
    node = await start(make_home(tmp_path), p2p_port=p2p_port)
    try:
        assert isinstance(node.transport, NullTransport)
        async with aiohttp.ClientSession() as session:
            client = Client(node, session)
            newcomer = Signer(b"\x05" * 32)
            args = {"org": "org2", "key": newcomer.public_key, "p2p": "http://127.0.0.1:1", "api": "http://127.0.0.1:2"}
            txs = [make_tx(ADMIN, CHAIN_ID, 0, "propose", {"action": "add_validator", "args": args})]
            txs += [make_tx(NET.admins[o], CHAIN_ID, 0, "vote", {"proposal": 1, "approve": True})
                    for o in ("org2", "org3")]
            status, body = await client.post("/v1/txs", {"txs": [b64(t.raw) for t in txs]})
            assert all(r["status"] == "pending" for r in body["results"])
            for t in txs:
                assert (await client.wait(t))["receipt"]["code"] == "ok"
            # validator_delay (2) blocks after the approval the set grows; keep committing until then
            nonce = 1
            while len(node.chain.validator_keys) < 2:
                t = transfer(ADMIN, nonce)
                await client.submit(t)
                await client.wait(t)
                nonce += 1
                assert nonce < 6, "validator change never took effect"
            vals = (await client.get("/v1/validators"))[1]
            from ledger.block import quorum
            assert len(vals["validators"]) == 2 and vals["quorum"] == quorum(2)
        assert not isinstance(node.transport, NullTransport) and node.transport is node.runner.transport
        for _ in range(200):  # started in the background: wait until it listens
            if node.transport.bound_port == p2p_port:
                break
            await asyncio.sleep(0.02)
        assert node.transport.bound_port == p2p_port
        assert [p["key"] for p in node.transport.peer_status()] == [newcomer.public_key.hex()]
        assert any("starting the p2p transport" in r.getMessage() for r in caplog.records)
        assert not any("restart it to connect to peers" in r.getMessage() for r in caplog.records)
    finally:
        await node.stop()
