"""`cxl gov …` and dry runs against a real single-validator node (its own thread and event
loop, real LevelDB, real HTTP): one proposal onboards an organisation with its members
and validator; mistakes are refused before they land and use no nonce."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from cli.main import cli
from genesis.testnet import make_testnet
from ledger.crypto import Signer
from ledger.encoding import sha256
from ledger.keystore import write_key
from nodethread import cxl, start_single_validator

NET = make_testnet(n_orgs=4, n_validators=1, chain_id="cxl-gov-cli")
NEW_ADMIN, NEW_OP, NEW_NODE = (Signer(sha256(f"gov-cli/{r}".encode())) for r in ("admin", "op", "node"))


@pytest.fixture
def net(tmp_path, monkeypatch):
    keys = {}
    for org in ("org1", "org2", "org3", "org4"):
        keys[org] = str(tmp_path / f"{org}-admin.json")
        write_key(keys[org], NET.admins[org], name=f"{org}-admin")
    keys["op1"] = str(tmp_path / "op1.json")
    write_key(keys["op1"], NET.operators["org1"], name="op1")
    node = start_single_validator(NET, tmp_path)
    monkeypatch.setenv("CXL_NODE", node.url)
    monkeypatch.setenv("CXL_GENESIS", str(tmp_path / "genesis.json"))  # every read and commit verified
    try:
        yield keys
    finally:
        node.stop()


def fails(*args) -> str:
    r = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 1, f"cxl {' '.join(map(str, args))} -> {r.exit_code}\n{r.output}"
    return r.output


def nonce(address: str) -> int:
    return json.loads(cxl("account", "show", address, "--json"))["nonce"]


ONBOARD = ["add_org", "org=acme", "name=Acme Compute", f"admin={NEW_ADMIN.public_key.hex()}",
           "add_member", "org=acme", f"key={NEW_OP.public_key.hex()}", "role=operator",
           "add_validator", "org=acme", f"key={NEW_NODE.public_key.hex()}", "p2p=http://10.1.1.1:26600",
           "api=http://10.1.1.1:26700"]


def test_onboard_an_org_with_one_proposal_and_two_votes(net):
    out = cxl("gov", "propose", *ONBOARD, "--key", net["org1"])
    assert "proposal 1 is open" in out and "cxl gov vote 1 --yes" in out
    listed = cxl("gov", "list")
    assert "add_org, add_member, add_validator" in listed and "open" in listed and "3 of 4" in listed
    shown = cxl("gov", "show", "1")
    assert "1 yes, 0 no, 3 not voted of 4 organisations; 3 yes needed (threshold 2/3)" in shown
    assert "org2  none" in shown and "role=operator" in shown
    assert "verified at height" in shown and "tally" in shown.split("not covered by the proof")[1]  # CXL_GENESIS
    cxl("gov", "vote", "1", "--yes", "--key", net["org2"])
    out = cxl("gov", "vote", "1", "--yes", "--key", net["org3"], "--json")
    assert json.loads(out)["receipt"]["result"]["status"] == "executed"
    p = json.loads(cxl("gov", "show", "1", "--json"))
    assert p["status"] == "executed" and [v["vote"] for v in p["votes"]][:4] == ["none", "yes", "yes", "yes"]
    assert p["verified"]["height"] == p["height"]
    org = cxl("gov", "orgs", "acme")
    assert NEW_ADMIN.address in org and NEW_OP.address in org and "operator" in org
    assert NEW_NODE.public_key.hex()[:16] in org  # listed as pending ("from height …") or already active
    # it joins validator_delay blocks later; with no more transactions, heartbeat blocks get there
    deadline = time.monotonic() + 30
    while "from height" in org:
        assert time.monotonic() < deadline, f"the validator change never took effect:\n{org}"
        time.sleep(0.2)
        org = cxl("gov", "orgs", "acme")
    assert NEW_NODE.public_key.hex() in org and "http://10.1.1.1:26600" in org
    assert "verified at height" in org and "members" in org.split("not covered by the proof")[1]
    assert "acme" in cxl("gov", "orgs")
    assert "max_block_txs" in cxl("gov", "params") and "verified at height" in cxl("gov", "params")
    assert json.loads(cxl("gov", "params", "--json"))["params"]["gov_threshold_num"]["value"] == 2


def test_mistakes_are_refused_before_they_land_and_use_no_nonce(net):
    before = nonce(NET.admins["org2"].address)
    out = fails("gov", "vote", "7", "--yes", "--key", net["org2"])
    assert "not sent" in out and "unknown_proposal: no proposal 7" in out
    out = fails("tx", "transfer", "--to", NEW_OP.address, "--amount", 10**17, "--key", net["op1"])
    assert "not sent" in out and "insufficient_funds" in out
    out = fails("gov", "propose", "add_member", "org=org1", f"key={NET.operators['org2'].public_key.hex()}",
                "role=operator", "--key", net["org1"])
    assert "would fail if approved now" in out and "member_exists" in out
    assert nonce(NET.admins["org2"].address) == before
    assert nonce(NET.admins["org1"].address) == 0
    assert "no proposals" in cxl("gov", "list")
    # --dry-run prints what would happen and sends nothing, even when it would succeed
    out = cxl("gov", "propose", "mint", f"to={NEW_OP.address}", "amount=5", "--key", net["org1"], "--dry-run")
    assert "dry run at height" in out and "ok" in out and "status=open" in out
    assert "no proposals" in cxl("gov", "list")
    # --force sends anyway: the chain records the failure
    out = fails("gov", "vote", "7", "--yes", "--key", net["org2"], "--force")
    assert "failed: unknown_proposal" in out
    assert nonce(NET.admins["org2"].address) == before + 1


def test_bad_arguments_are_usage_errors(net, tmp_path):
    for args, text in [
        (["frobnicate"], "neither an action"),
        (["org=x"], "before any action"),
        (["add_member", "org=org1", "key=zz", "role=admin"], "action 1 (add_member)"),
        (["mint", "to=cx00", "amount=x"], "whole number"),
        (["mint", "amount=1", "amount=2"], "given twice"),
    ]:
        r = CliRunner().invoke(cli, ["gov", "propose", *args, "--key", net["org1"]])
        assert r.exit_code == 2 and text in r.output, (args, r.output)
    r = CliRunner().invoke(cli, ["gov", "propose", "--key", net["org1"]])
    assert r.exit_code == 2 and "--file" in r.output
    f = tmp_path / "actions.json"
    f.write_text(json.dumps({"actions": [{"action": "mint", "args": {"to": NEW_OP.address, "amount": 3}},
                                         {"action": "set_param", "args": {"name": "max_block_txs", "value": 900}}]}))
    out = cxl("gov", "propose", "--file", f, "--key", net["org1"])
    assert "proposal 1 is open" in out
    assert "mint, set_param" in cxl("gov", "list", "--status", "open")
    f.write_text("[1]")
    assert "expected a JSON list" in fails("gov", "propose", "--file", f, "--key", net["org1"])
    assert "no proposal 5" in fails("gov", "show", "5")
