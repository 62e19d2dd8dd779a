"""Hostile input against the client API of a real single-validator node: nothing a
client sends may produce a 500, a traceback in the log, or a change of state; every
refusal is a 4xx with the ``{"error": {"code", "message"}}`` shape."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import aiohttp
import pytest

from genesis.schema import save as save_genesis
from genesis.testnet import make_testnet
from ledger.keystore import write_key
from node.app import Node
from node.config import init_home, load_config

NET = make_testnet(n_validators=1)


def make_home(tmp_path: Path) -> Path:
    save_genesis(NET.doc, tmp_path / "genesis.json")
    write_key(tmp_path / "validator.json", NET.validators[0])
    home = tmp_path / "home"
    init_home(home, tmp_path / "genesis.json", tmp_path / "validator.json", api_port=1)
    return home


async def start(home: Path, **overrides) -> Node:
    node = Node(home, config=dataclasses.replace(load_config(home), api_port=0, **overrides))
    await node.start()
    return node


@pytest.fixture
async def node(tmp_path):
    n = await start(make_home(tmp_path))
    yield n
    await n.stop()


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


async def answer(session, node, method: str, path: str, **kw) -> tuple[int, dict]:
    async with session.request(method, node.api_url + path, **kw) as r:
        assert r.content_type == "application/json", (r.status, await r.text())
        return r.status, await r.json()


def assert_error(status: int, body: dict, want_status: int, code: str | None = None) -> None:
    assert status == want_status, body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    if code is not None:
        assert body["error"]["code"] == code, body


# -- item 6: parser errors are 400, never 500 ----------------------------------------------------

async def test_deeply_nested_json_body_is_400(node, session):
    body = "[" * 1000 + "]" * 1000
    status, out = await answer(session, node, "POST", "/v1/txs", data=body,
                               headers={"Content-Type": "application/json"})
    assert_error(status, out, 400, "bad_json")
    status, out = await answer(session, node, "POST", "/v1/txs", data='{"tx": ' + "[" * 5000 + "]" * 5000 + "}",
                               headers={"Content-Type": "application/json"})
    assert status == 400 and out["error"]["code"] in ("bad_json", "bad_base64")


async def test_huge_integer_in_json_body_is_400(node, session):
    status, out = await answer(session, node, "POST", "/v1/txs", data='{"tx": ' + "9" * 5000 + "}",
                               headers={"Content-Type": "application/json"})
    assert_error(status, out, 400, "bad_json")


@pytest.mark.parametrize("height", ["\u00b2", "\u0661", "\uff11", "1\u0660", "+1", " 1", "1_0", "-1"])
async def test_non_ascii_or_signed_heights_are_400(node, session, height):
    status, out = await answer(session, node, "GET", "/v1/blocks/" + height)
    assert_error(status, out, 400, "bad_height")


async def test_height_beyond_the_head_is_404_even_when_huge(node, session):
    for text in ("5", "9" * 19):
        status, out = await answer(session, node, "GET", "/v1/blocks/" + text)
        assert_error(status, out, 404, "unknown_block")


@pytest.mark.parametrize("wait", ["\u0661", "\uff11", "nan", "inf", "-0.5", "1_0", " 1", "1e999", "0x10"])
async def test_bad_wait_values_are_400(node, session, wait):
    status, out = await answer(session, node, "GET", "/v1/txs/" + "ab" * 32, params={"wait": wait})
    assert_error(status, out, 400, "bad_wait")


@pytest.mark.parametrize("path", [
    "/v1/accounts/cx" + "\u0661" * 40, "/v1/accounts/cx" + " 0" * 20, "/v1/accounts/CX" + "0" * 40,
    "/v1/accounts/cx" + "0" * 41,
    "/v1/accounts/cx" + " 0" * 20 + "/market", "/v1/accounts/" + "\u0661" * 64 + "/market",
])
async def test_bad_addresses_are_400(node, session, path):
    status, out = await answer(session, node, "GET", path)
    assert_error(status, out, 400, "bad_address")


@pytest.mark.parametrize("path", [
    "/v1/listings/\u0661", "/v1/leases/\u00b2", "/v1/attestations/\uff11", "/v1/listings/0",
    "/v1/listings/" + "9" * 30, "/v1/listings?limit=\u0661", "/v1/listings?cursor=\u00b2",
    "/v1/attestations?subject_type=listing&subject=\u0661", "/v1/leases?tenant=cx" + " 0" * 20,
    "/v1/listings?min_units=1e3",
])
async def test_bad_market_parameters_are_400(node, session, path):
    status, out = await answer(session, node, "GET", path)
    assert status == 400 and set(out["error"]) == {"code", "message"}, out
