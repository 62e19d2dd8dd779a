"""Fuzzing the HTTP layer of a real node: whatever bytes a client sends, the answer is
never a 500, any error is the JSON error shape, nothing is logged with a traceback, and
the node keeps serving. Bounded hypothesis tests (max_examples, no deadline)."""

from __future__ import annotations

import json
import socket

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from genesis.schema import save as save_genesis
from genesis.testnet import make_testnet
from ledger.keystore import write_key
from node.config import init_home

from nodethread import NodeThread

# no interval heartbeats: the genesis time is years ago, and these tests count blocks from 0
NET = make_testnet(n_validators=1, params={"heartbeat_interval_ms": 0})
FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    directory = tmp_path_factory.mktemp("httpfuzz")
    save_genesis(NET.doc, directory / "genesis.json")
    write_key(directory / "validator.json", NET.validators[0])
    home = directory / "home"
    init_home(home, directory / "genesis.json", directory / "validator.json", api_port=1, max_wait_s=0,
              api_header_timeout_s=1, api_body_timeout_s=1, api_idle_timeout_s=1)
    nt = NodeThread(home)
    yield nt
    nt.stop()
    assert "Traceback" not in home.joinpath("node.log").read_text()


def exchange(port: int, data: bytes, half_close: bool = True) -> bytes:
    """Send `data`, read the answer until the server closes (bounded). With `half_close`
    the client also ends its side at once, so an incomplete request costs no deadline
    (aiohttp then drops the connection, often without an answer: also acceptable)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError:  # the server may answer and close before reading everything
            pass
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        return out


def check_answers(answer: bytes) -> None:
    """Every complete answer in `answer` (pipelined ones too) is well-formed and not a 500."""
    while answer.startswith(b"HTTP/1."):
        head, sep, rest = answer.partition(b"\r\n\r\n")
        if not sep:
            return
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:] if ": " in line)}
        length = int(headers.get("content-length", len(rest)))
        body, answer = rest[:length], rest[length:]
        assert status != 500 and status < 600, (status, body[:300])
        if status >= 400 and body:  # never aiohttp's plain-text error page
            assert headers.get("content-type", "").startswith("application/json"), (status, body[:300])
            doc = json.loads(body)
            assert set(doc) == {"error"} and set(doc["error"]) == {"code", "message"}, doc


methods = st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"G\x00T", b"\x16\x03\x01"])
paths = st.one_of(
    st.sampled_from([b"/v1/status", b"/v1/txs", b"/v1/txs/" + b"ab" * 32 + b"?wait=1", b"/v1/blocks/1",
                     b"/v1/blocks/latest", b"/v1/accounts/cx" + b"0" * 40, b"/v1/listings?limit=5",
                     b"/v1/leases/1", b"/metrics", b"/v1/openapi.json", b"*", b"/%ff%00", b"//../.."]),
    st.binary(max_size=40).map(lambda b: b"/" + b.replace(b" ", b"").replace(b"\r", b"").replace(b"\n", b"")),
)
header_names = st.sampled_from([b"Content-Length", b"Transfer-Encoding", b"Content-Type", b"Expect", b"Connection",
                                b"Upgrade", b"Host", b"Content-Encoding", b"X-Any"])
header_values = st.one_of(
    st.sampled_from([b"chunked", b"gzip", b"identity, chunked", b"100-continue", b"close", b"keep-alive",
                     b"websocket", b"application/json", b"0", b"-1", b"99999999999", b"5, 7", b"deflate"]),
    st.integers(0, 10_000).map(lambda n: str(n).encode()),
    st.binary(max_size=30).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
)
bodies = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b'{"tx": "AAAA"}', b'{"txs": []}', b"5\r\nhello\r\n0\r\n\r\n", b"zz\r\n", b"[" * 3000,
                     b'{"tx": ' + b"9" * 5000 + b"}"]),
)


@FUZZ
@given(method=methods, path=paths, version=st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/9.9", b""]),
       headers=st.lists(st.tuples(header_names, header_values), max_size=6), body=bodies)
def test_any_request_bytes_get_a_well_formed_answer(served, method, path, version, headers, body):
    request = method + b" " + path + b" " + version + b"\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in headers)
    check_answers(exchange(served.node.api_port, request + b"\r\n" + body))


@FUZZ
@given(data=st.binary(min_size=1, max_size=400))
def test_random_bytes_get_a_well_formed_answer_or_a_close(served, data):
    check_answers(exchange(served.node.api_port, data))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["tx", "txs", "x"]) | st.text(max_size=5),
                                                                inner, max_size=3),
    max_leaves=12,
)


@FUZZ
@given(value=json_values)
def test_any_json_submission_is_refused_in_the_error_shape(served, value):
    body = json.dumps(value).encode()
    answer = exchange(served.node.api_port, b"POST /v1/txs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body, half_close=False)
    assert answer.startswith(b"HTTP/1.1 "), answer[:100]
    check_answers(answer)
    assert served.node.chain.height == 0


def test_the_node_still_serves_after_the_fuzzing(served):
    answer = exchange(served.node.api_port, b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                      half_close=False)
    assert answer.startswith(b"HTTP/1.1 200")
