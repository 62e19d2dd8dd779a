"""`cxl audit compare` with a node that does not answer: it is reported, the others are
compared, and the exit status says the comparison was incomplete (3), a difference (1)
still wins over that, and agreement of every node is 0."""

from __future__ import annotations

import json
import socket

import pytest
from aiohttp import web
from click.testing import CliRunner

from audit.compare import compare_nodes
from audit.testchain import build_test_chain
from cli.audit import audit_group
from test_audit_http import StubNode, _forked


class FailingNode(StubNode):
    """Answers its status and the first `blocks_ok` block requests, then only 503s."""

    def __init__(self, *a, blocks_ok: int, **kw):
        super().__init__(*a, **kw)
        self.blocks_ok = blocks_ok

    async def block(self, request):
        if self.blocks_ok <= 0:
            return web.json_response({"error": {"code": "overloaded", "message": "try later"}}, status=503)
        self.blocks_ok -= 1
        return await super().block(request)


@pytest.fixture(scope="module")
def bc():
    return build_test_chain(blocks=20)


@pytest.fixture
def dead_url():
    """A port nothing listens on: bound then closed, so connecting is refused at once."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def test_unreachable_node_is_reported_and_the_rest_compared(bc, dead_url):
    with StubNode(bc.chain, bc.net.genesis_hash) as a, StubNode(bc.chain, bc.net.genesis_hash) as b:
        cmp = compare_nodes([a.url, dead_url, b.url], timeout=5)
        assert (cmp.agree, cmp.complete, cmp.ok) == (True, False, False)
        assert list(cmp.heights) == [a.url, b.url] and cmp.common_height == 20
        assert list(cmp.unreachable) == [dead_url] and "cannot reach" in cmp.unreachable[dead_url]

        r = CliRunner().invoke(audit_group, ["compare", a.url, dead_url, b.url])
        assert r.exit_code == 3, r.output
        assert f"{dead_url}: UNREACHABLE" in r.output and "(2 of 3 nodes compared)" in r.output
        r = CliRunner().invoke(audit_group, ["compare", a.url, dead_url, b.url, "--json"])
        data = json.loads(r.stdout)
        assert r.exit_code == 3 and data["ok"] is False and data["agree"] is True
        assert data["compared"] == [a.url, b.url] and list(data["unreachable"]) == [dead_url]

        r = CliRunner().invoke(audit_group, ["compare", a.url, b.url])
        assert r.exit_code == 0 and "agree on all 20 common blocks" in r.output


def test_a_difference_among_the_answering_nodes_still_exits_1(bc, dead_url):
    fork = _forked(12, 20)
    with StubNode(bc.chain, bc.net.genesis_hash) as a, StubNode(fork.chain, bc.net.genesis_hash) as c:
        r = CliRunner().invoke(audit_group, ["compare", a.url, c.url, dead_url, "--json"])
        data = json.loads(r.stdout)
        assert r.exit_code == 1 and data["first_difference"] == 12 and list(data["unreachable"]) == [dead_url]


def test_only_one_node_answering_is_nothing_to_compare(bc, dead_url):
    with StubNode(bc.chain, bc.net.genesis_hash) as a:
        r = CliRunner().invoke(audit_group, ["compare", a.url, dead_url])
        assert r.exit_code == 3 and "only 1 of 2 nodes answered: nothing to compare" in r.output


def test_node_failing_mid_search_is_dropped_and_the_search_redone(bc):
    fork = _forked(12, 20)
    with StubNode(bc.chain, bc.net.genesis_hash) as a, StubNode(fork.chain, bc.net.genesis_hash) as c, \
            FailingNode(bc.chain, bc.net.genesis_hash, blocks_ok=2) as flaky:
        cmp = compare_nodes([a.url, flaky.url, c.url], timeout=5)
        assert list(cmp.unreachable) == [flaky.url] and "503" in cmp.unreachable[flaky.url]
        assert (cmp.first_difference, cmp.confirmed) == (12, True)
        assert set(cmp.hashes) == {a.url, c.url}  # the result is about the nodes that answered throughout


def test_a_malformed_url_is_still_a_clear_error():
    r = CliRunner().invoke(audit_group, ["compare", "http://127.0.0.1:1", "ftp://x"])
    assert r.exit_code == 1 and "is not a node URL" in r.output
