"""Full nodes on a real localnet: every node is its own OS process (`cxl node start`).

* A full node (config role "full", its key in the validators' `full_node_keys`) follows
  a 4-validator network under load; its API agrees with the validators (identical
  blocks, head hash and state root); a transaction posted to it is forwarded and
  committed, and `?wait=` on it answers once it has followed the block; its status shows
  role "full" and how far behind it is, and /health does not call it "no quorum".
* A node whose key nobody admitted gets a close reason that says why.
* A validator removed by governance says so in its log and keeps following as a full
  node (status role "full", its height keeps up).
* A 5th organisation's node, started as a full node and listed by governance
  (add_org + add_node), follows the chain; then governance adds it as a validator and it
  votes from its activation height, with no restart of anyone: with one of the old
  validators stopped, the chain commits only if it votes.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from ledger.crypto import Signer
from ledger.keystore import load_key, write_key
from ledger.tx import make_tx

from netharness import LocalNet, Workload, check_same_chain, http

pytestmark = pytest.mark.slow

PARAMS = {"view_timeout_ms": 1000, "block_interval_ms": 20}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def add_node(net: LocalNet, name: str, signer: Signer, **settings) -> int:
    """Another node home on the localnet's genesis (not a validator); returns its index."""
    from node.config import init_home

    key_path = net.root / f"{name}-key.json"
    write_key(key_path, signer)
    api_port, p2p_port = free_port(), free_port()
    home = net.root / name
    init_home(home, net.manifest["genesis"], key_path, api_port=api_port, p2p_port=p2p_port, metrics_port=0,
              **settings)
    net.nodes.append({"name": name, "home": str(home), "api_port": api_port, "p2p_port": p2p_port,
                      "api": f"http://127.0.0.1:{api_port}", "p2p": f"http://127.0.0.1:{p2p_port}",
                      "node_key": {"public_key": signer.public_key.hex(), "path": str(key_path)}})
    net.homes.append(Path(home))
    net.apis.append(f"http://127.0.0.1:{api_port}")
    net.metrics_urls.append("")
    net.procs.append(None)
    net.peak_hwm_kib.append(0)
    net.n += 1
    return net.n - 1


def wait_for(what: str, cond, net: LocalNet, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s\n{net.diagnose()}")
        time.sleep(0.1)


def admins(net: LocalNet) -> dict[str, Signer]:
    return {org["id"]: load_key(org["keys"]["admin"]["path"]) for org in net.manifest["orgs"]}


def operators(net: LocalNet) -> list[Signer]:
    return [load_key(org["keys"]["operator"]["path"]) for org in net.manifest["orgs"]]


class Gov:
    """Governance proposals from the organisations' admins, sent to node `via`."""

    def __init__(self, net: LocalNet, via: int = 0):
        self.net, self.via, self.keys, self.nonces = net, via, admins(net), {}

    def send(self, org: str, kind: str, payload: dict) -> dict:
        signer = self.keys[org]
        nonce = self.nonces.get(org, 0)
        self.nonces[org] = nonce + 1
        stx = make_tx(signer, self.net.chain_id, nonce, kind, payload)
        (res,) = self.net.submit(self.via, [stx.raw])
        assert res["status"] in ("pending", "committed"), res
        rec = wait_for(f"{kind} committed", lambda: (self.net.tx(self.via, stx.hash.hex(), wait=2) or {}).get(
            "status") == "committed" and self.net.tx(self.via, stx.hash.hex()), self.net)
        assert rec["receipt"]["code"] == "ok", rec
        return rec["receipt"]

    def pass_(self, actions: list[dict], voters: tuple[str, ...]) -> None:
        receipt = self.send("org1", "propose", {"actions": actions})
        pid = receipt["result"]["proposal"]
        for org in voters:
            receipt = self.send(org, "vote", {"proposal": pid, "approve": True})
        assert receipt["result"]["status"] == "executed", receipt


def status(net: LocalNet, i: int) -> dict:
    st = net.status(i)
    assert st is not None, net.log_tail(i)
    return st


@pytest.fixture
def net(request, tmp_path):
    slot = sum(map(ord, request.node.name))
    full_key = Signer.generate()
    n = LocalNet(tmp_path / "net", 4, params=PARAMS, slot=slot,
                 config={"full_node_keys": [full_key.public_key.hex()]})
    n.full_key = full_key
    try:
        yield n
    finally:
        n.close()


def test_a_full_node_follows_under_load_serves_reads_forwards_txs_and_a_removed_validator_follows(net):
    full = add_node(net, "full", net.full_key, role="full")
    net.start_all()
    net.wait_ready()
    load = Workload(net, operators(net))
    load.run(rounds=5, nodes=[0, 1, 2, 3])

    # it follows under load, and its API agrees with the validators
    top = check_same_chain(net, [0, 1, 2, 3, full], min_height=3)
    heads = {i: net.get(i, f"/v1/blocks/{top}")["hash"] for i in (0, full)}
    assert heads[0] == heads[full]
    st = status(net, full)
    assert st["role"] == "full" and st["configured_role"] == "full"
    assert st["peers_connected"] >= 1 and isinstance(st["blocks_behind"], int) and st["blocks_behind"] >= 0
    assert st["stalled_reason"] is None
    health = http("GET", net.apis[full] + "/health")
    assert "no_quorum" not in {r["code"] for r in health.get("reasons", [])}, health
    # the validators show it apart from their validator peers
    v0 = wait_for("the full node's session on node1", lambda: (st := status(net, 0)) and net.full_key.public_key.hex()
                  in [s["key"] for s in st["full_nodes"]] and st, net)
    assert net.full_key.public_key.hex() not in [p["key"] for p in v0["peers"]]

    # a transaction posted to the full node is forwarded and committed; ?wait= on it answers
    sender = operators(net)[0]
    stx = make_tx(sender, net.chain_id, load.nonces[0], "transfer",
                  {"to": operators(net)[1].address, "amount": 3})
    load.nonces[0] += 1
    (res,) = net.submit(full, [stx.raw])
    assert res["status"] == "pending", res
    rec = wait_for("forwarded tx committed on the full node",
                   lambda: (net.tx(full, stx.hash.hex(), wait=5) or {}).get("status") == "committed"
                   and net.tx(full, stx.hash.hex()), net)
    assert rec["block_hash"] == net.tx(0, stx.hash.hex(), wait=5)["block_hash"]

    # a node nobody admitted is refused with a reason that names why
    stranger = add_node(net, "stranger", Signer.generate(), role="full")
    net.start(stranger)
    net.wait_ready([stranger])
    errors = wait_for("refusal reason", lambda: [p["last_error"] for p in status(net, stranger)["peers"]
                                                 if "not a validator or listed full node" in p["last_error"]], net)
    assert errors and status(net, stranger)["height"] == 0
    net.terminate(stranger)

    # a validator removed by governance keeps following as a full node
    removed_key = net.nodes[3]["node_key"]["public_key"]
    Gov(net).pass_([{"action": "remove_validator", "args": {"key": removed_key}}], voters=("org2", "org3"))
    load.run(rounds=3, nodes=[0, 1, 2])
    st3 = wait_for("node4 role full", lambda: (s := net.status(3)) and s["role"] == "full" and s, net)
    assert st3["follow"]["role_changes"][-1]["role"] == "full"
    removed_at = st3["follow"]["role_changes"][-1]["height"]
    load.run(rounds=3, nodes=[0, 1, 2])
    top = check_same_chain(net, [0, 1, 2, 3, full], min_height=removed_at + 1)
    assert top > removed_at
    log = (net.homes[3] / "node.log").read_text()
    assert "removed from the validator set" in log and f"from height {removed_at}" in log
    # it signs no certificate from the height it left the set at
    for h in range(removed_at, top + 1):
        signers = {s["key"] for s in net.get(0, f"/v1/blocks/{h}")["certificate"]["signatures"]}
        assert removed_key not in signers
    assert status(net, 3)["role"] == "full" and status(net, 3)["height"] >= top


def test_a_fifth_organisation_joins_as_a_full_node_then_votes_without_restarts(net):
    net.start_all()
    net.wait_ready()
    load = Workload(net, operators(net))
    load.run(rounds=3, nodes=[0, 1, 2, 3])

    # the new organisation makes its keys and runs a full node (not yet admitted by anyone)
    org5_admin, org5_node = Signer.generate(), Signer.generate()
    joiner = add_node(net, "org5", org5_node, role="full")
    net.start(joiner)
    net.wait_ready([joiner])
    p2p_port = net.nodes[joiner]["p2p_port"]
    api = net.apis[joiner]

    gov = Gov(net)
    gov.pass_([{"action": "add_org", "args": {"org": "org5", "name": "Organisation 5",
                                             "admin": org5_admin.public_key.hex()}},
               {"action": "add_node", "args": {"org": "org5", "key": org5_node.public_key.hex(),
                                              "host": "127.0.0.1", "port": p2p_port}}],
              voters=("org2", "org3"))
    load.run(rounds=2, nodes=[0, 1, 2, 3])
    check_same_chain(net, [0, 1, 2, 3, joiner])  # listed: it follows
    assert status(net, joiner)["role"] == "full"

    # governance adds it as a validator (5 organisations now: 4 votes)
    gov.keys["org5"] = org5_admin
    gov.pass_([{"action": "add_validator", "args": {"org": "org5", "key": org5_node.public_key.hex(),
                                                   "p2p": f"http://127.0.0.1:{p2p_port}", "api": api}}],
              voters=("org2", "org3", "org5"))
    load.run(rounds=3, nodes=[0, 1, 2, 3])
    st = wait_for("the new node votes", lambda: (s := net.status(joiner)) and s["role"] == "validator" and s, net)
    joined_at = st["follow"]["role_changes"][-1]["height"]
    assert st["follow"]["role_changes"][-1]["role"] == "validator"
    assert len(status(net, 0)["validators"]) == 5

    # with one old validator stopped, 4 of 5 are needed: the chain moves only with the new one
    net.terminate(0)
    load.run(rounds=4, nodes=[1, 2, 3, joiner], timeout=60)
    top = check_same_chain(net, [1, 2, 3, joiner], min_height=joined_at + 1)
    signed = [h for h in range(joined_at, top + 1)
              if org5_node.public_key.hex() in {s["key"] for s in net.get(1, f"/v1/blocks/{h}")["certificate"]["signatures"]}]
    assert signed, f"the new validator signed no certificate in {joined_at}..{top}"
    assert all(net.alive(i) for i in (1, 2, 3, joiner))  # nobody was restarted
