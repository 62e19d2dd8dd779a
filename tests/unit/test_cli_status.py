"""`cxl status`: the operations fields (version, role, catching up, connected peers, last
commit, stalled, health) in human output; --json passes the node's document through."""

from __future__ import annotations

import json

from click.testing import CliRunner

import cli.node as clinode
from cli.main import cli

KEYS = ["aa" * 32, "bb" * 32, "cc" * 32, "dd" * 32]


def _status(**over):
    st = {"chain_id": "c", "height": 9, "view": 2, "node_key": KEYS[0],
          "validators": [{"key": k, "org": f"org{i}", "api": "a", "p2p": "p"} for i, k in enumerate(KEYS)],
          "mempool": {"txs": 3, "bytes": 100, "ready": 3}, "peers": [{"key": k} for k in KEYS[1:]],
          "version": "0.1.0", "role": "validator", "catching_up": False, "peers_connected": 1,
          "connected_peers": [KEYS[1]], "last_commit_age_ms": 4200, "views_since_commit": 0,
          "stalled_reason": "no_quorum"}
    st.update(over)
    return st


class FakeClient:
    def __init__(self, st):
        self.st = st

    def status(self):
        return self.st


def _run(monkeypatch, st, *args):
    monkeypatch.setattr(clinode, "client_for", lambda url: FakeClient(st))
    return CliRunner().invoke(cli, ["status", "--node", "http://n:1", *args])


def _fields(out: str) -> dict:
    rows = {}
    for line in out.splitlines():
        if not line.strip():
            break
        key, _, value = line.partition("  ")
        rows[key.strip()] = value.strip()
    return rows


def test_status_shows_the_operations_fields(monkeypatch):
    res = _run(monkeypatch, _status())
    assert res.exit_code == 0, res.output
    f = _fields(res.output)
    assert f["version"] == "0.1.0" and f["role"] == "validator" and f["catching up"] == "no"
    assert f["peers"] == "1 connected of 3" and f["last commit"] == "4.2 s ago"
    assert f["stalled"].startswith("yes: ") and "quorum" in f["stalled"]
    assert f["health"] == "degraded (no_quorum)"
    sessions = [line.split()[-1] for line in res.output.splitlines() if line.startswith(("aaaa", "bbbb", "cccc"))]
    assert sessions == ["self", "up", "down"]


def test_status_of_a_healthy_node(monkeypatch):
    st = _status(peers_connected=3, connected_peers=KEYS[1:], stalled_reason=None, catching_up=True)
    f = _fields(_run(monkeypatch, st).output)
    assert f["stalled"] == "no" and f["catching up"] == "yes" and f["health"] == "degraded (behind)"


def test_status_of_an_older_node_without_the_fields(monkeypatch):
    st = {k: v for k, v in _status().items()
          if k not in ("version", "role", "catching_up", "peers_connected", "connected_peers",
                       "last_commit_age_ms", "stalled_reason", "views_since_commit")}
    res = _run(monkeypatch, st)
    assert res.exit_code == 0, res.output
    f = _fields(res.output)
    assert "health" not in f and "version" not in f and f["peers"] == "3"


def test_status_json_is_the_node_document(monkeypatch):
    st = _status()
    res = _run(monkeypatch, st, "--json")
    assert res.exit_code == 0 and json.loads(res.output) == st


def test_status_says_when_another_process_has_the_node_key(monkeypatch):
    st = _status(peers_connected=3, connected_peers=KEYS[1:], stalled_reason=None,
                 duplicate_key={"peer": KEYS[1], "since_ms": 1, "seen": 2})
    f = _fields(_run(monkeypatch, st).output)
    assert f["health"] == "degraded (duplicate_key)" and f["duplicate key"].startswith("YES")
    healthy = _fields(_run(monkeypatch, _status(peers_connected=3, connected_peers=KEYS[1:], stalled_reason=None,
                                                duplicate_key=None)).output)
    assert healthy["health"] == "ready" and "duplicate key" not in healthy


def test_status_of_a_full_node_shows_its_role_height_and_how_far_behind_it_is(monkeypatch):
    st = _status(role="full", stalled_reason=None, peers_connected=2, connected_peers=KEYS[:2],
                 best_peer_height=14, blocks_behind=5, catching_up=True)
    f = _fields(_run(monkeypatch, st).output)
    assert f["role"] == "full" and f["height"] == "9"
    assert f["behind"] == "5 blocks (best peer at 14)"
    assert f["peers"] == "2 connected of 3 it follows"
    assert f["health"] == "degraded (behind)"  # never no_quorum: a full node is no voter
    f = _fields(_run(monkeypatch, dict(st, blocks_behind=None, best_peer_height=None, catching_up=False)).output)
    assert f["behind"].startswith("unknown") and f["health"] == "ready"
