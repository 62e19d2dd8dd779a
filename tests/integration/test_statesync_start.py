"""`cxl node start --state-sync` / config `state_sync`: a node with an empty data directory
starts from a verified snapshot of another node instead of replaying from genesis; its
chain then goes on exactly like a full replay's (identical roots); a data directory that
holds a chain is never touched; a failed sync writes nothing and says why."""

from __future__ import annotations

import dataclasses
import logging

import aiohttp
import pytest
from click.testing import CliRunner

from cli.main import cli
from genesis.schema import save as save_genesis
from ledger.chain import Chain
from ledger.store.leveldb import LevelDBStore
from ledger.store.memory import MemoryStore
from node.app import Node
from node.config import init_home, load_config
from node.errors import ConfigError
from node.statesync import StateSyncError, bootstrap, is_empty, parse_urls

from tests.integration.test_statesync import CHAIN, NET

import base64

from ledger.tx import make_tx


async def commit_block(node, count: int) -> None:
    """`count` transfers from one admin in one block (nonces continue from the account's)."""
    signer = NET.admins[sorted(NET.admins)[0]]
    to = NET.operators[sorted(NET.operators)[0]].address
    async with aiohttp.ClientSession() as s:
        async with s.get(node.api_url + f"/v1/accounts/{signer.address}") as r:
            nonce = (await r.json())["nonce"]
        txs = [make_tx(signer, CHAIN, nonce + i, "transfer", {"to": to, "amount": 1}) for i in range(count)]
        async with s.post(node.api_url + "/v1/txs", json={"txs": [base64.b64encode(t.raw).decode() for t in txs]}) as r:
            assert r.status == 200, await r.text()
        async with s.get(node.api_url + f"/v1/txs/{txs[-1].hash.hex()}?wait=10") as r:
            assert (await r.json())["status"] == "committed"


@pytest.fixture
async def source(tmp_path):
    """A running single validator with some blocks."""
    save_genesis(NET.doc, tmp_path / "genesis.json")
    from ledger.keystore import write_key
    write_key(tmp_path / "validator.json", NET.validators[0])
    home = tmp_path / "source"
    init_home(home, tmp_path / "genesis.json", tmp_path / "validator.json", api_port=1)
    n = Node(home, config=dataclasses.replace(load_config(home), api_port=0))
    await n.start()
    yield n
    await n.stop()


def fresh_home(tmp_path, name: str):
    """A home for a node that is not a validator (a fresh key), with an empty data dir."""
    home = tmp_path / name
    init_home(home, tmp_path / "genesis.json")
    return home


async def start(home, **overrides) -> Node:
    n = Node(home, config=dataclasses.replace(load_config(home), api_port=0, **overrides))
    await n.start()
    return n


async def get(url: str):
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, await r.json()


async def test_a_state_synced_node_and_a_full_replay_reach_identical_roots(source, tmp_path):
    await commit_block(source, 5)
    await commit_block(source, 5)  # a second block, so the snapshot is above height 1
    synced_at = source.chain.height
    assert synced_at >= 2
    home = fresh_home(tmp_path, "synced")
    node = await start(home, state_sync=source.api_url)
    try:
        assert node.chain.height == synced_at and node.chain.base_height == synced_at
        assert node.chain.head.block_hash == source.chain.get_block(synced_at).hash
        assert node.chain.head.state_root == source.chain.get_block(synced_at).header.state_root
        status, st = await get(node.api_url + "/v1/status")
        assert status == 200 and st["base_height"] == synced_at and st["height"] == synced_at
        addr = NET.operators[sorted(NET.operators)[0]].address
        _, theirs = await get(source.api_url + f"/v1/accounts/{addr}")
        _, ours = await get(node.api_url + f"/v1/accounts/{addr}")
        assert ours["balance"] == theirs["balance"] and ours["balance"] > 0
        status, err = await get(node.api_url + "/v1/blocks/1")
        assert status == 404 and err["error"]["code"] == "block_not_held"
        status, blk = await get(node.api_url + f"/v1/blocks/{synced_at}")
        assert status == 200 and blk["hash"] == source.chain.get_block(synced_at).hash.hex()
    finally:
        await node.stop()

    await commit_block(source, 3)  # the source goes on; the synced store follows its certified blocks
    top = source.chain.height
    assert top > synced_at
    store = LevelDBStore(home / "data")
    try:
        synced = Chain(store, NET.doc, NET.genesis_hash)
        for h in range(synced_at + 1, top + 1):
            synced.apply_certified(source.chain.get_block(h), source.chain.get_cert(h))
        replay = Chain(MemoryStore(), NET.doc, NET.genesis_hash)
        for h in range(1, top + 1):
            replay.apply_certified(source.chain.get_block(h), source.chain.get_cert(h))
        assert synced.head == replay.head == source.chain.head
        assert synced.head.state_root == replay.head.state_root
    finally:
        store.close()


async def test_a_data_directory_that_holds_a_chain_is_never_state_synced(source, tmp_path, caplog):
    await commit_block(source, 2)
    home = fresh_home(tmp_path, "has-chain")
    node = await start(home)  # replays from genesis: height 0 here (a non-validator of a 1-validator chain)
    await node.stop()
    caplog.set_level(logging.INFO, logger="cxl")
    node = await start(home, state_sync="http://127.0.0.1:1")  # nothing listens there: fetching would fail
    try:
        assert node.chain.height == 0 and node.chain.base_height == 0
        assert any("state sync skipped" in r.getMessage() for r in caplog.records)
    finally:
        await node.stop()


async def test_a_failed_state_sync_writes_nothing_and_says_why(source, tmp_path):
    home = fresh_home(tmp_path, "failed")
    with pytest.raises(ConfigError) as info:
        await start(home, state_sync="http://127.0.0.1:1")
    assert info.value.code == "state_sync_failed" and "127.0.0.1:1" in str(info.value)
    store = LevelDBStore(home / "data")
    try:
        assert is_empty(store)
    finally:
        store.close()
    node = await start(home)  # and it can still replay from genesis
    await node.stop()


async def test_a_snapshot_not_certified_by_the_trusted_set_is_refused(source, tmp_path):
    await commit_block(source, 1)
    other = dict(NET.doc, validators=[dict(NET.doc["validators"][0],
                                           key=bytes(32 * [7]).hex())])  # a genesis whose set never signed
    store = MemoryStore()
    with pytest.raises(StateSyncError, match="not certified by the trusted validator set") as info:
        await bootstrap(store, other, NET.genesis_hash, [source.api_url], logging.getLogger("t"))
    assert info.value.code == "state_sync_failed" and is_empty(store)


def test_state_sync_urls_are_checked():
    assert parse_urls(" http://a:1/, https://b:2 ") == ["http://a:1", "https://b:2"]
    for bad in ("", " , ", "ftp://x", "a:1"):
        with pytest.raises(StateSyncError) as info:
            parse_urls(bad)
        assert info.value.code == "bad_state_sync_urls"


def test_node_start_refuses_a_bad_state_sync_url_before_starting(tmp_path):
    save_genesis(NET.doc, tmp_path / "genesis.json")
    home = fresh_home(tmp_path, "cli")
    result = CliRunner().invoke(cli, ["node", "start", "--home", str(home), "--state-sync", "ftp://x"])
    assert result.exit_code != 0 and "--state-sync" in result.output and "not an http(s) URL" in result.output
    help_text = CliRunner().invoke(cli, ["node", "start", "--help"]).output
    assert "--state-sync" in help_text


from tests.integration.test_light_cli import served  # noqa: E402,F401  (a node serving a chain whose set changed twice)


async def test_state_sync_follows_certified_validator_set_changes_from_genesis(served):
    from genesis.schema import load
    from ledger import lightclient

    doc, ghash = load(served["genesis"])
    store = MemoryStore()
    height = await bootstrap(store, doc, ghash, [served["url"]], logging.getLogger("t"))
    assert height == served["height"]
    chain = Chain(store, doc, ghash)
    assert chain.height == height and chain.base_height == height
    genesis_keys = lightclient.genesis_set(doc).keys
    assert sorted(chain.validator_keys) != sorted(genesis_keys)  # the set changed since genesis
    # the keys stored as having certified the head are the set that decided it, not the genesis set
    assert chain.head_validator_keys != genesis_keys
    # with only the genesis set (no following) the same snapshot is refused
    with pytest.raises(StateSyncError, match="not certified"):
        from node.statesync import sync_snapshot
        await sync_snapshot([served["url"]], doc["chain_id"], genesis_keys, MemoryStore())
