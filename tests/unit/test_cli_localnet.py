"""`cxl localnet init` and `cxl node init` files, and one port convention across CLI, node and localnet."""

import json
import stat
from pathlib import Path
from urllib.parse import urlparse

import pytest
from click.testing import CliRunner

from cli.client import DEFAULT_NODE_URL
from cli.main import cli
from genesis.localnet import DEFAULT_BASE_PORT, ports
from genesis.schema import load
from node.config import NodeConfig, load_config


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_default_ports_agree():
    p2p, api = ports(1, DEFAULT_BASE_PORT)
    assert urlparse(DEFAULT_NODE_URL).port == api == NodeConfig().api_port
    assert p2p == NodeConfig().p2p_port


def test_localnet_init_writes_genesis_keys_homes_and_manifest(tmp_path):
    d = tmp_path / "net"
    r = run("localnet", "init", "--validators", 3, "--dir", d, "--base-port", 30000, "--chain-id", "dev-1",
            "--balance", 777, "--json")
    assert r.exit_code == 0, r.output
    manifest = json.loads(r.stdout)
    assert manifest == json.loads((d / "localnet.json").read_text())
    doc, h = load(manifest["genesis"])
    assert doc["chain_id"] == "dev-1" and manifest["genesis_hash"] == h.hex()
    assert [v["api"] for v in doc["validators"]] == [f"http://127.0.0.1:{30100 + k}" for k in (1, 2, 3)]
    assert [v["p2p"] for v in doc["validators"]] == [f"http://127.0.0.1:{30000 + k}" for k in (1, 2, 3)]
    funded = {b["address"]: b["amount"] for b in doc["balances"]}
    for org, node, v in zip(manifest["orgs"], manifest["nodes"], doc["validators"]):
        assert set(org["keys"]) == {"admin", "operator", "auditor"}
        for role, key in org["keys"].items():
            kdoc = json.loads(Path(key["path"]).read_text())
            assert kdoc["encrypted"] is False and "UNENCRYPTED" in kdoc["warning"]
            assert kdoc["address"] == key["address"]
            assert stat.S_IMODE(Path(key["path"]).stat().st_mode) == 0o600
            assert funded.get(key["address"]) == (777 if role in ("admin", "operator") else None)
        home = Path(node["home"])
        assert node["api"] == v["api"] and node["p2p"] == v["p2p"] and node["org"] == org["id"]
        cfg = load_config(home)
        assert (cfg.api_port, cfg.p2p_port) == (node["api_port"], node["p2p_port"])
        assert json.loads((home / "node_key.json").read_text())["public_key"] == v["key"]
        assert load(home / "genesis.json")[1] == h


def test_localnet_init_refuses_then_replaces_with_force(tmp_path):
    d = tmp_path / "net"
    assert run("localnet", "init", "--dir", d).exit_code == 0
    old_hash = json.loads((d / "localnet.json").read_text())["genesis_hash"]
    r = run("localnet", "init", "--dir", d)
    assert r.exit_code == 1 and "--force" in r.stderr
    r = run("localnet", "init", "--dir", d, "--validators", 2, "--force")
    assert r.exit_code == 0, r.output
    manifest = json.loads((d / "localnet.json").read_text())
    assert manifest["genesis_hash"] != old_hash and len(manifest["nodes"]) == 2


@pytest.mark.parametrize("args", [["--validators", 0], ["--validators", 100], ["--base-port", 80]])
def test_localnet_init_usage_errors(tmp_path, args):
    assert run("localnet", "init", "--dir", tmp_path / "n", *args).exit_code == 2


def test_localnet_start_and_status_need_a_manifest(tmp_path):
    r = run("localnet", "start", "--dir", tmp_path)
    assert r.exit_code == 1 and "cxl localnet init" in r.stderr


def test_node_init_takes_ports_from_the_genesis_entry_of_its_key(tmp_path):
    d = tmp_path / "net"
    run("localnet", "init", "--validators", 2, "--dir", d, "--base-port", 30500)
    manifest = json.loads((d / "localnet.json").read_text())
    node2 = manifest["nodes"][1]
    r = run("node", "init", "--home", tmp_path / "h", "--genesis", manifest["genesis"],
            "--node-key", node2["node_key"]["path"], "--json")
    info = json.loads(r.stdout)
    assert info["validator"] is True and (info["api_port"], info["p2p_port"]) == (30602, 30502)
    r = run("node", "init", "--home", tmp_path / "h", "--genesis", manifest["genesis"])
    assert r.exit_code == 1 and "--force" in r.stderr
    r = run("node", "start", "--home", tmp_path / "nothing")
    assert r.exit_code == 1 and "cxl node init" in r.stderr


def test_chain_parameters_on_init(tmp_path):
    d = tmp_path / "net"
    r = run("localnet", "init", "--dir", d, "--param", "block_interval_ms=25", "--param", "validator_delay=3")
    assert r.exit_code == 0, r.output
    doc, _ = load(d / "genesis.json")
    assert doc["params"] == {"block_interval_ms": 25, "validator_delay": 3}
    bad = run("localnet", "init", "--dir", tmp_path / "n2", "--param", "block_interval_ms=0")
    assert bad.exit_code == 2 and "block_interval_ms" in bad.stderr
    bad = run("genesis", "init", "--chain-id", "c", "--out", tmp_path / "g.json", "--param", "nope=1")
    assert bad.exit_code == 2 and "unknown parameter" in bad.stderr
    ok = run("genesis", "init", "--chain-id", "c", "--out", tmp_path / "g.json", "--param", "max_block_txs=10")
    assert ok.exit_code == 0 and json.loads((tmp_path / "g.json").read_text())["params"] == {"max_block_txs": 10}
