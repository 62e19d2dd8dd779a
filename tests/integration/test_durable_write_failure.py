"""A real single-validator node on LevelDB whose disk fails under it: a failed synced
write of the signing record (WAL) stops the node with an error instead of carrying on
with a record the core believes written. Restarted on a working disk it resumes from what
did reach the disk and commits normally, without ever signing two different blocks."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import signal

import aiohttp
import plyvel
import pytest

from genesis.schema import save as save_genesis
from genesis.testnet import make_testnet
from ledger.keystore import write_key
from ledger.store.leveldb import LevelDBStore
from ledger.tx import make_tx

from node.app import Node, serve
from node.config import init_home, load_config
from node.errors import NodeError
from node.runner import WAL_SIGNED

# no interval heartbeats: the genesis time is years ago, and these tests count blocks from 0
NET = make_testnet(n_validators=1, params={"heartbeat_interval_ms": 0})
ADMIN = NET.admins["org1"]
OP2 = NET.operators["org2"]


def transfer(nonce):
    return make_tx(ADMIN, NET.doc["chain_id"], nonce, "transfer", {"to": OP2.address, "amount": 1})


def make_home(tmp_path):
    save_genesis(NET.doc, tmp_path / "genesis.json")
    write_key(tmp_path / "validator.json", NET.validators[0])
    home = tmp_path / "home"
    init_home(home, tmp_path / "genesis.json", tmp_path / "validator.json", api_port=1)
    return home


async def submit(url, stx):
    async with aiohttp.ClientSession() as s:
        async with s.post(url + "/v1/txs", json={"tx": base64.b64encode(stx.raw).decode()}) as r:
            assert r.status in (200, 202), await r.text()
        async with s.get(url + f"/v1/txs/{stx.hash.hex()}?wait=10") as r:
            return await r.json()


async def test_failed_wal_write_stops_the_node_and_a_restart_resumes(tmp_path, monkeypatch):
    home = make_home(tmp_path)
    cfg = dataclasses.replace(load_config(home), api_port=0)
    started: list[Node] = []
    real_start, real_write = Node.start, LevelDBStore.write

    async def start_and_note(self):
        await real_start(self)
        started.append(self)

    def wal_write_fails(self, puts, *, sync=True):
        if WAL_SIGNED in puts:
            raise plyvel.IOError(b"simulated: No space left on device")
        real_write(self, puts, sync=sync)

    monkeypatch.setattr(Node, "start", start_and_note)
    monkeypatch.setattr(LevelDBStore, "write", wal_write_fails)
    loop = asyncio.get_running_loop()
    serving = asyncio.ensure_future(serve(home, config=cfg))
    try:
        for _ in range(200):
            if started or serving.done():
                break
            await asyncio.sleep(0.05)
        node = started[0]
        url = node.api_url
        asyncio.ensure_future(submit(url, transfer(0)))  # the proposal's signature cannot be recorded
        with pytest.raises(NodeError, match="halted: writing the signing record"):
            await asyncio.wait_for(serving, 20)
        assert node.store is None  # stopped and closed
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        serving.cancel()

    monkeypatch.setattr(LevelDBStore, "write", real_write)  # the disk is fixed
    node = Node(home, config=cfg)
    await node.start()
    try:
        assert node.chain.height == 0 and node.runner.signed_state is None  # nothing reached the disk
        body = await submit(node.api_url, transfer(0))
        assert body["status"] == "committed" and node.chain.height == 1
    finally:
        await node.stop()
