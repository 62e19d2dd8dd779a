"""Heartbeat blocks on a localnet of four real validator processes: time-driven state moves
on a quiet chain. No transaction is sent after the one that starts the clock; what moves
the state is an empty block the primary proposes once the chain's rule says one is due
(ledger/heartbeat.py), which every replica checks.

`heartbeat_interval_ms` is 0 here, so the only empty blocks are those that run a due
transition or a pending validator change: nothing else could have moved the state.
"""

from __future__ import annotations

import time

import pytest

from ledger.crypto import Signer
from ledger.encoding import sha256
from ledger.keystore import load_key
from ledger.market.harness import listing_payload
from ledger.tx import make_tx

from netharness import LocalNet

pytestmark = pytest.mark.slow

PARAMS = {"heartbeat_interval_ms": 0, "accept_window_ms": 2_000, "validator_delay": 3,
          "view_timeout_ms": 1_000, "block_interval_ms": 20}
NEW_VALIDATOR = Signer(sha256(b"heartbeat-test/new-validator"))  # never started: quorum stays 3 of 5


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    n = LocalNet(tmp_path_factory.mktemp("hb") / "net", 4, params=PARAMS, slot=5381, chain_id="cxl-heartbeat")
    try:
        n.start_all()
        n.wait_ready()
        yield n
    finally:
        n.close()


def key(net: LocalNet, org: int, role: str) -> Signer:
    return load_key(net.manifest["orgs"][org]["keys"][role]["path"])


def nonce(net: LocalNet, signer: Signer) -> int:
    return net.get(0, f"/v1/accounts/{signer.address}")["nonce"]


def commit(net: LocalNet, signer: Signer, kind: str, payload: dict) -> dict:
    """Send one transaction and wait until it is committed; returns the tx record."""
    stx = make_tx(signer, net.chain_id, nonce(net, signer), kind, payload)
    (res,) = net.submit(0, [stx.raw])
    assert res.get("status") in ("pending", "committed"), res
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rec = net.tx(0, stx.hash.hex(), wait=5)
        if rec is not None and rec.get("status") == "committed":
            assert rec["receipt"]["code"] == "ok", rec
            return rec
    raise AssertionError(f"{kind} not committed in 60 s\n{net.diagnose()}")


def wait_for(cond, what: str, timeout: float = 60):
    """Poll until `cond()`; the bound only stops a broken run, it measures nothing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"{what}: not reached in {timeout} s")


def blocks_after(net: LocalNet, node: int, height: int) -> list[dict]:
    head = net.status(node)["height"]
    return [net.get(node, f"/v1/blocks/{h}") for h in range(height + 1, head + 1)]


def test_a_lease_expires_on_a_quiet_chain(net):
    provider, tenant = key(net, 0, "operator"), key(net, 1, "operator")
    listing = commit(net, provider, "listing_create", listing_payload(units=2))["receipt"]["result"]["listing"]
    opened = commit(net, tenant, "lease_open", {"listing": listing, "units": 1, "hours": 1, "max_price": 1_000_000})
    lease_id, at = opened["receipt"]["result"]["lease"], opened["height"]
    assert net.get(0, f"/v1/leases/{lease_id}")["status"] == "pending"
    escrowed = net.get(0, f"/v1/accounts/{tenant.address}/market")["escrow_as_tenant"]
    assert escrowed > 0
    # no more transactions: the provider never accepts, the acceptance deadline passes
    for i in range(4):
        wait_for(lambda: net.get(i, f"/v1/leases/{lease_id}")["status"] == "expired", f"lease expired on node{i + 1}")
    for i in range(4):
        later = blocks_after(net, i, at)
        assert later and all(b["txs"] == [] for b in later), "only heartbeat blocks after the lease was opened"
        assert net.get(i, f"/v1/accounts/{tenant.address}/market")["escrow_as_tenant"] == 0  # refunded
    # the same chain everywhere
    top = min(net.status(i)["height"] for i in range(4))
    assert len({net.get(i, f"/v1/blocks/{top}")["hash"] for i in range(4)}) == 1


def test_a_validator_addition_takes_effect_on_a_quiet_chain(net):
    admins = [key(net, org, "admin") for org in range(3)]
    args = {"org": net.manifest["orgs"][1]["id"], "key": NEW_VALIDATOR.public_key.hex(),
            "p2p": "http://127.0.0.1:9", "api": "http://127.0.0.1:10"}
    proposed = commit(net, admins[0], "propose", {"action": "add_validator", "args": args})
    pid = proposed["receipt"]["result"]["proposal"]
    commit(net, admins[1], "vote", {"proposal": pid, "approve": True})
    passed = commit(net, admins[2], "vote", {"proposal": pid, "approve": True})
    assert passed["receipt"]["result"]["status"] == "executed"
    at = passed["height"]
    assert len(net.get(0, "/v1/validators")["validators"]) == 4  # pending for validator_delay blocks
    # no more transactions: heartbeat blocks carry the chain to the activation height
    for i in range(4):
        wait_for(lambda: len(net.get(i, "/v1/validators")["validators"]) == 5, f"new validator on node{i + 1}")
        assert NEW_VALIDATOR.public_key.hex() in [v["key"] for v in net.get(i, "/v1/validators")["validators"]]
        later = blocks_after(net, i, at)
        assert len(later) >= PARAMS["validator_delay"] - 1 and all(b["txs"] == [] for b in later)
