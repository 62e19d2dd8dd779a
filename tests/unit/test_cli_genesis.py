"""`cxl genesis …`: building a genesis step by step; every validation error names its field."""

import copy
import json

import pytest
from click.testing import CliRunner

from cli.main import cli
from genesis.schema import load
from ledger.crypto import Signer
from ledger.crypto import address_from_payload


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def hexkey() -> str:
    return Signer.generate().public_key.hex()


@pytest.fixture
def gfile(tmp_path):
    path = tmp_path / "genesis.json"
    r = invoke("genesis", "init", "--chain-id", "test-chain", "--out", path, "--genesis-time-ms", 1000)
    assert r.exit_code == 0, r.output
    return path


def test_full_build_validates_and_hashes(gfile, tmp_path):
    kdir = tmp_path / "keys"
    for name in ("adm", "node"):
        assert invoke("keys", "new", name, "--dir", kdir, "--unencrypted").exit_code == 0
    r = invoke("genesis", "add-org", "-g", gfile, "--id", "acme", "--name", "Acme DC",
               "--admin-keyfile", kdir / "adm.json", "--operator-key", hexkey(), "--auditor-key", hexkey(),
               "--balance", 500)
    assert r.exit_code == 0, r.output
    r = invoke("genesis", "add-validator", "-g", gfile, "--org", "acme", "--node-keyfile", kdir / "node.json",
               "--p2p", "http://127.0.0.1:26601", "--api", "http://127.0.0.1:26701/")
    assert r.exit_code == 0, r.output
    doc, h = load(gfile)
    assert [m["role"] for m in doc["orgs"][0]["members"]] == ["admin", "operator", "auditor"]
    assert len(doc["balances"]) == 2 and all(b["amount"] == 500 for b in doc["balances"])
    assert doc["validators"][0]["api"] == "http://127.0.0.1:26701"
    v = invoke("genesis", "validate", gfile, "--json")
    assert v.exit_code == 0 and json.loads(v.stdout)["genesis_hash"] == h.hex()
    assert invoke("genesis", "hash", gfile).stdout.strip() == h.hex()
    assert h.hex() in invoke("genesis", "validate", gfile).stdout


def test_skeleton_is_written_but_does_not_validate(gfile):
    r = invoke("genesis", "validate", gfile)
    assert r.exit_code == 1 and "orgs: must be a non-empty list" in r.stderr


def test_init_refuses_to_overwrite_and_checks_chain_id(gfile):
    r = invoke("genesis", "init", "--chain-id", "x", "--out", gfile)
    assert r.exit_code == 1 and "--force" in r.stderr
    r = invoke("genesis", "init", "--chain-id", "bad id!", "--out", gfile.parent / "g2.json")
    assert r.exit_code == 2 and "--chain-id" in r.stderr


@pytest.mark.parametrize("args, field", [
    (["--id", "Bad_Id", "--name", "x", "--admin-key", "KEY"], "orgs[0].id"),
    (["--id", "ok", "--name", "", "--admin-key", "KEY"], "orgs[0].name"),
])
def test_add_org_errors_name_the_field(gfile, args, field):
    args = [hexkey() if a == "KEY" else a for a in args]
    r = invoke("genesis", "add-org", "-g", gfile, *args)
    assert r.exit_code == 1 and field in r.stderr and "nothing written" in r.stderr
    assert json.loads(gfile.read_text())["orgs"] == []


def test_add_org_usage_errors(gfile):
    r = invoke("genesis", "add-org", "-g", gfile, "--id", "a", "--name", "A")
    assert r.exit_code == 2 and "--admin-key" in r.stderr
    r = invoke("genesis", "add-org", "-g", gfile, "--id", "a", "--name", "A", "--admin-key", "zz")
    assert r.exit_code == 2 and "--admin-key" in r.stderr


def test_duplicates_name_the_field(gfile):
    k = hexkey()
    assert invoke("genesis", "add-org", "-g", gfile, "--id", "a", "--name", "A", "--admin-key", k).exit_code == 0
    r = invoke("genesis", "add-org", "-g", gfile, "--id", "a", "--name", "A2", "--admin-key", hexkey())
    assert r.exit_code == 1 and "orgs[1].id" in r.stderr and "duplicate" in r.stderr
    r = invoke("genesis", "add-org", "-g", gfile, "--id", "b", "--name", "B", "--admin-key", k)
    assert r.exit_code == 1 and "orgs[1].members[0].key" in r.stderr
    nk = hexkey()
    ok = invoke("genesis", "add-validator", "-g", gfile, "--org", "a", "--node-key", nk,
                "--p2p", "http://h:1", "--api", "http://h:2")
    assert ok.exit_code == 0
    r = invoke("genesis", "add-validator", "-g", gfile, "--org", "a", "--node-key", nk,
               "--p2p", "http://h:3", "--api", "http://h:4")
    assert r.exit_code == 1 and "validators[1].key" in r.stderr


def test_add_validator_errors(gfile):
    invoke("genesis", "add-org", "-g", gfile, "--id", "a", "--name", "A", "--admin-key", hexkey())
    r = invoke("genesis", "add-validator", "-g", gfile, "--org", "zz", "--node-key", hexkey(),
               "--p2p", "http://h:1", "--api", "http://h:2")
    assert r.exit_code == 1 and "--org" in r.stderr and "known: a" in r.stderr
    r = invoke("genesis", "add-validator", "-g", gfile, "--org", "a", "--node-key", hexkey(),
               "--p2p", "ftp://h:1", "--api", "http://h:2")
    assert r.exit_code == 2 and "--p2p" in r.stderr
    r = invoke("genesis", "add-validator", "-g", gfile, "--org", "a", "--p2p", "http://h:1", "--api", "http://h:2")
    assert r.exit_code == 2 and "--node-key" in r.stderr


def test_edits_need_an_existing_file(tmp_path):
    r = invoke("genesis", "add-org", "-g", tmp_path / "none.json", "--id", "a", "--name", "A",
               "--admin-key", hexkey())
    assert r.exit_code == 1 and "cxl genesis init" in r.stderr


VALID = {
    "chain_id": "c", "genesis_time_ms": 1, "params": {},
    "orgs": [{"id": "a", "name": "A", "members": [{"key": "11" * 32, "role": "admin"}]}],
    "validators": [{"org": "a", "key": "22" * 32, "p2p": "http://h:1", "api": "http://h:2"}],
    "balances": [{"address": address_from_payload(b"\x33" * 20), "amount": 5}],
}


def _set(doc, path, value):
    target = doc
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = value


@pytest.mark.parametrize("path, value, field", [
    (["chain_id"], "", "chain_id"),
    (["genesis_time_ms"], -1, "genesis_time_ms"),
    (["params", "nope"], 1, "params.nope"),
    (["params", "max_block_txs"], 0, "params.max_block_txs"),
    (["orgs"], [], "orgs"),
    (["orgs", 0, "members", 0, "role"], "boss", "orgs[0].members[0].role"),
    (["orgs", 0, "members", 0, "key"], "xyz", "orgs[0].members[0].key"),
    (["orgs", 0, "members"], [{"key": "11" * 32, "role": "operator"}], "orgs[0].members"),
    (["validators"], [], "validators"),
    (["validators", 0, "org"], "b", "validators[0].org"),
    (["validators", 0, "api"], "h:2", "validators[0].api"),
    (["balances", 0, "address"], "cxnope", "balances[0].address"),
    (["balances", 0, "amount"], 0, "balances[0].amount"),
    (["surprise"], 1, "surprise"),
])
def test_validate_names_the_field(tmp_path, path, value, field):
    doc = copy.deepcopy(VALID)
    _set(doc, path, value)
    f = tmp_path / "g.json"
    f.write_text(json.dumps(doc))
    r = invoke("genesis", "validate", f)
    assert r.exit_code == 1
    assert f"{field}:" in r.stderr, r.stderr
    assert "Traceback" not in r.output


def test_validate_reports_bad_json_with_position(tmp_path):
    f = tmp_path / "g.json"
    f.write_text('{"chain_id": ')
    r = invoke("genesis", "validate", f)
    assert r.exit_code == 1 and "line 1" in r.stderr
    r = invoke("genesis", "hash", tmp_path / "missing.json")
    assert r.exit_code == 1 and "cannot read" in r.stderr
