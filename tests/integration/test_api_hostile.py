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


# -- item 1: idle, slow and flooding clients ------------------------------------------------------

async def raw(node, data: bytes = b"", *, local: str = "127.0.0.1", bound_s: float = 10) -> bytes:
    """Send `data` on a fresh connection and read until the server closes it (bounded)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", node.api_port, local_addr=(local, 0))
    try:
        if data:
            writer.write(data)
            await writer.drain()
        return await asyncio.wait_for(reader.read(), bound_s)
    finally:
        writer.close()


def split(answer: bytes) -> tuple[int, dict, dict]:
    """(status, headers, JSON body) of one raw HTTP/1.1 answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


@pytest.fixture
async def quick(tmp_path):
    """A node with one-second header, idle and body deadlines and small connection budgets."""
    n = await start(make_home(tmp_path), api_header_timeout_s=1, api_idle_timeout_s=1, api_body_timeout_s=1,
                    max_connections=40, api_max_connections_per_ip=30, api_max_long_polls=5,
                    api_max_long_polls_per_ip=3)
    yield n
    await n.stop()


async def status_from(node, local: str) -> int:
    answer = await raw(node, b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", local=local)
    return split(answer)[0]


async def test_a_silent_connection_gets_408_and_is_closed(quick):
    status, _, body = split(await raw(quick))
    assert_error(status, body, 408, "header_timeout")


async def test_an_idle_keep_alive_connection_is_closed(quick):
    reader, writer = await asyncio.open_connection("127.0.0.1", quick.api_port)
    try:
        writer.write(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(next(v for k, v in split(head + b"{}")[1].items() if k == "content-length"))
        await asyncio.wait_for(reader.readexactly(length), 5)
        assert await asyncio.wait_for(reader.read(), 10) == b""  # the server closed the idle connection
    finally:
        writer.close()


async def test_slowloris_headers_get_408(quick):
    reader, writer = await asyncio.open_connection("127.0.0.1", quick.api_port)
    request = b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40
    answer = b""
    try:
        for byte in request:  # one byte every 0.1 s: 4.6 s for all of it, far beyond the 1 s deadline
            writer.write(bytes([byte]))
            try:
                answer = await asyncio.wait_for(reader.read(4096), 0.1)
                break  # the server answered (and closed) before the headers were complete
            except asyncio.TimeoutError:
                continue
    finally:
        writer.close()
    status, headers, body = split(answer)
    assert_error(status, body, 408, "header_timeout")
    assert headers.get("connection") == "close"


async def test_a_slow_body_gets_408(quick):
    answer = await raw(quick, b"POST /v1/txs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              b"Content-Length: 1000\r\n\r\n{\"tx\": \"")
    status, headers, body = split(answer)
    assert_error(status, body, 408, "body_timeout")
    assert headers.get("connection") == "close"


@pytest.mark.parametrize("expect", [b"", b"Expect: 100-continue\r\n"])
async def test_a_declared_huge_body_gets_413_before_any_of_it(tmp_path, expect):
    node = await start(make_home(tmp_path), api_body_timeout_s=600)  # a 408 cannot come first
    try:
        answer = await raw(node, b"POST /v1/txs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 100000000\r\n" + expect + b"\r\n")
        assert b"100 Continue" not in answer
        status, _, body = split(answer)
        assert_error(status, body, 413, "body_too_large")
        assert "100000000" in body["error"]["message"]
    finally:
        await node.stop()


async def test_connections_per_address_are_limited_and_others_still_served(quick):
    held = [await asyncio.open_connection("127.0.0.1", quick.api_port) for _ in range(30)]
    try:
        await asyncio.sleep(0.1)
        status, headers, body = split(await raw(quick))  # the 31st from 127.0.0.1
        assert_error(status, body, 503, "too_many_connections")
        assert headers.get("retry-after") == "1"
        assert await status_from(quick, "127.0.0.2") == 200  # another address is still served
    finally:
        for _, w in held:
            w.close()


async def test_an_idle_flood_never_locks_out_a_real_client(quick):
    flood = [await asyncio.open_connection("127.0.0.1", quick.api_port, local_addr=(f"127.0.0.{2 + i % 3}", 0))
             for i in range(60)]  # 60 idle sockets from three addresses: more than max_connections (40)
    try:
        await asyncio.sleep(0.1)
        for _ in range(5):  # the first probe takes the slot of the connection idle the longest
            assert await status_from(quick, "127.0.0.9") == 200  # the next ones the slot it freed
        answers = await asyncio.gather(*(asyncio.wait_for(r.read(), 10) for r, _ in flood))
        codes = [split(a)[2]["error"]["code"] for a in answers]
        assert set(codes) == {"header_timeout", "too_many_connections"}
        assert codes.count("too_many_connections") == 20 + 1  # the oldest 20, then one for the probes
        assert codes[:21] == ["too_many_connections"] * 21  # oldest first
    finally:
        for _, w in flood:
            w.close()


async def test_when_every_connection_is_busy_a_new_one_is_refused(tmp_path):
    node = await start(make_home(tmp_path), max_connections=3, api_max_long_polls=3)
    try:
        async with aiohttp.ClientSession() as s:
            polls = [asyncio.create_task(long_poll(s, node, n)) for n in range(3)]
            await asyncio.sleep(0.5)
            status, headers, body = split(await raw(node, b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n"))
            assert_error(status, body, 503, "too_many_connections")
            assert [r[0] for r in await asyncio.wait_for(asyncio.gather(*polls), 15)] == [404] * 3
            assert await status_from(node, "127.0.0.1") == 200  # the slots came back
    finally:
        await node.stop()


async def long_poll(session, node, n: int, local: str = "127.0.0.1") -> tuple[int, dict, dict]:
    url = f"{node.api_url}/v1/txs/{n:064x}?wait=3"
    async with session.get(url) as r:
        return r.status, dict(r.headers), await r.json()


async def test_long_polls_have_their_own_budget(quick):
    conns = [aiohttp.TCPConnector(local_addr=(f"127.0.0.{i}", 0), limit=0) for i in (1, 2)]
    sessions = [aiohttp.ClientSession(connector=c) for c in conns]
    try:
        polls = [asyncio.create_task(long_poll(sessions[0], quick, n)) for n in range(20)]
        await asyncio.sleep(0.5)
        polls += [asyncio.create_task(long_poll(sessions[1], quick, 100 + n)) for n in range(3)]
        await asyncio.sleep(0.5)
        probe = await answer(sessions[1], quick, "GET", "/v1/status")
        assert probe[0] == 200  # long polls never hold the node
        results = await asyncio.wait_for(asyncio.gather(*polls), 15)
    finally:
        for s in sessions:
            await s.close()
    # the held polls were answered after their full 3 s wait although the idle and header
    # deadlines are 1 s: those never cut a request in flight
    first, second = results[:20], results[20:]
    held = [r for r in results if r[0] == 404]
    refused = [r for r in results if r[0] == 429]
    assert len(held) == 5 and len(refused) == 18  # 5 in total; at most 3 from 127.0.0.1
    assert sum(1 for r in first if r[0] == 404) == 3 and sum(1 for r in second if r[0] == 404) == 2
    for status, headers, body in refused:
        assert_error(status, body, 429, "too_many_waits")
        assert headers.get("Retry-After") == "1"


async def test_the_cli_client_falls_back_to_polling_when_long_polls_are_full(tmp_path):
    from cli.client import NodeClient, NodeError as ClientError

    node = await start(make_home(tmp_path), api_max_long_polls=0)
    try:
        with pytest.raises(ClientError) as err:
            await asyncio.to_thread(NodeClient(node.api_url).tx, "ab" * 32, 1)
        assert err.value.status == 404 and err.value.code == "unknown_tx"  # answered, not "too many waits"
    finally:
        await node.stop()


# -- item 7: malformed HTTP gets the JSON error shape and one log line -----------------------------

MALFORMED = {
    "huge header": (b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 431,
                    "headers_too_large"),
    "huge request line": (b"GET /v1/status?" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431,
                          "headers_too_large"),
    "too many headers": (b"GET /v1/status HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200))
                         + b"\r\n", 400, None),
    "bad chunking": (b"POST /v1/txs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
                     400, None),
    "conflicting lengths": (b"POST /v1/txs HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
                            b"\r\n0\r\n\r\n", 400, None),
    "two content lengths": (b"POST /v1/txs HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n"
                            b"12345", 400, None),
    "negative length": (b"POST /v1/txs HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, None),
    "tls client hello": (bytes.fromhex("160301012c010001280303") + b"\x00" * 40, 400, "bad_http"),
    "garbage": (b"\x00\x01\x02 / HTTP/1.1\r\n\r\n", 400, "bad_http"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
async def test_malformed_http_gets_a_json_error_and_one_log_line(node, caplog, name):
    data, want, code = MALFORMED[name]
    caplog.set_level("DEBUG")
    status, headers, body = split(await raw(node, data))
    assert_error(status, body, want, code)  # and `raw` saw the server close the connection
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert "Traceback" not in node.home.log_file.read_text()


async def test_405_carries_allow(node, session):
    async with session.post(node.api_url + "/v1/status", json={}) as r:
        assert r.status == 405
        assert set(r.headers["Allow"].split(",")) >= {"GET"}
        body = await r.json()
    assert_error(405, body, 405, "method_not_allowed")
    assert "GET" in body["error"]["message"]


async def test_an_aborted_websocket_upgrade_to_the_api_logs_nothing(node, caplog):
    caplog.set_level("DEBUG")
    request = (b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
               b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    for abort_after_answer in (False, True):
        reader, writer = await asyncio.open_connection("127.0.0.1", node.api_port)
        writer.write(request)
        if abort_after_answer:
            assert (await asyncio.wait_for(reader.read(12), 5)).startswith(b"HTTP/1.1 200")
        writer.transport.abort()  # gone mid-upgrade, with or without reading the answer
    await asyncio.sleep(0.3)
    assert not [r for r in caplog.records if r.exc_info or r.levelname == "ERROR"]
    assert await status_from(node, "127.0.0.1") == 200


async def test_a_flood_of_malformed_requests_logs_a_bounded_number_of_lines(node, caplog):
    caplog.set_level("INFO")
    for _ in range(60):
        await raw(node, MALFORMED["garbage"][0])
    lines = [r for r in caplog.records if "malformed request" in r.getMessage()]
    assert 1 <= len(lines) <= 25


async def test_slow_bodies_make_room_for_a_real_client(tmp_path, caplog):
    node = await start(make_home(tmp_path), max_connections=4, api_body_timeout_s=600)
    slow = []
    try:
        for _ in range(4):  # every slot: a POST whose body never finishes
            reader, writer = await asyncio.open_connection("127.0.0.1", node.api_port)
            writer.write(b"POST /v1/txs HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"tx\": ")
            slow.append((reader, writer))
        await asyncio.sleep(0.3)
        assert await status_from(node, "127.0.0.2") == 200  # served at once, not after 600 s
        status, _, body = split(await asyncio.wait_for(slow[0][0].read(), 5))  # the oldest made room
        assert_error(status, body, 503, "too_many_connections")
        await asyncio.sleep(0.2)
        assert not [r for r in caplog.records if r.exc_info or r.levelname == "ERROR"]
    finally:
        for _, w in slow:
            w.close()
        await node.stop()


# -- issue 11 item 5: an unregistered transaction type is refused at admission, never committed ---

async def test_an_unregistered_tx_type_is_422_and_never_committed(node, session):
    import base64

    from ledger.tx import make_tx

    signer = NET.admins[sorted(NET.admins)[0]]
    t = make_tx(signer, NET.doc["chain_id"], 0, "teleport", {})
    status, out = await answer(session, node, "POST", "/v1/txs", json={"tx": base64.b64encode(t.raw).decode()})
    assert_error(status, out, 422, "unknown_type")
    status, out = await answer(session, node, "POST", "/v1/txs", json={"txs": [base64.b64encode(t.raw).decode()]})
    assert status == 200 and out["results"][0]["error"]["code"] == "unknown_type", out
    assert len(node.mempool) == 0
    # a real transaction after it commits; the refused one never does
    ok = make_tx(signer, NET.doc["chain_id"], 0, "transfer", {"to": signer.address, "amount": 1})
    status, out = await answer(session, node, "POST", "/v1/txs", json={"tx": base64.b64encode(ok.raw).decode()})
    assert status == 202, out
    status, out = await answer(session, node, "GET", f"/v1/txs/{ok.hash.hex()}?wait=10")
    assert status == 200 and out["status"] == "committed", out
    assert node.chain.get_tx(t.hash) is None
    status, out = await answer(session, node, "GET", f"/v1/txs/{t.hash.hex()}")
    assert_error(status, out, 404, "unknown_tx")
