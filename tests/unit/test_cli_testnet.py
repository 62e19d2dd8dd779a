"""`cxl testnet init --hosts …`: a genesis with each validator's endpoints at its host and one
node home per host whose config listens there (genesis.testnet.create_testnet + cli/testnet.py)."""

import json

import pytest
from click.testing import CliRunner

from cli.main import cli
from genesis.schema import load
from genesis.testnet import TestnetError, host_endpoints, parse_hosts
from node.config import load_config


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_a_host_named_twice_gets_the_next_ports():
    assert host_endpoints(["10.0.0.1", "10.0.0.2", "10.0.0.1"], 100, 200) == [
        ("http://10.0.0.1:100", "http://10.0.0.1:200"), ("http://10.0.0.2:100", "http://10.0.0.2:200"),
        ("http://10.0.0.1:101", "http://10.0.0.1:201")]


@pytest.mark.parametrize("text", ["", "a,,b", "http://x", "10.0.0.1:80", "a b"])
def test_bad_host_lists_are_refused(text):
    with pytest.raises(TestnetError):
        parse_hosts(text)


def test_testnet_init_writes_genesis_and_one_home_per_host(tmp_path):
    d = tmp_path / "net"
    r = run("testnet", "init", "--hosts", "10.0.0.1,10.0.0.2,node3.example", "--dir", d, "--chain-id", "mh-1", "--json")
    assert r.exit_code == 0, r.output
    manifest = json.loads(r.stdout)
    doc, h = load(d / "genesis.json")
    assert manifest["genesis_hash"] == h.hex() and doc["chain_id"] == "mh-1"
    assert [(v["p2p"], v["api"]) for v in doc["validators"]] == [
        ("http://10.0.0.1:26601", "http://10.0.0.1:26701"), ("http://10.0.0.2:26601", "http://10.0.0.2:26701"),
        ("http://node3.example:26601", "http://node3.example:26701")]
    assert [o["id"] for o in doc["orgs"]] == ["org1", "org2", "org3"]
    for node, v in zip(manifest["nodes"], doc["validators"]):
        assert node["node_key"]["public_key"] == v["key"]
        home = d / node["name"]
        assert str(home) == node["home"] and load(home / "genesis.json")[1] == h
        assert json.loads((home / "node_key.json").read_text())["public_key"] == v["key"]
        cfg = load_config(home, environ={})
        assert (cfg.p2p_host, cfg.api_host) == (node["host"], node["host"]) == (node["p2p_host"], node["api_host"])
        assert (cfg.p2p_port, cfg.api_port) == (26601, 26701)
    assert json.loads((d / "testnet.json").read_text()) == manifest
    for org in manifest["orgs"]:
        assert set(org["keys"]) == {"admin", "operator", "auditor"}


def test_testnet_listen_ports_and_loopback_hosts(tmp_path):
    d = tmp_path / "net"
    r = run("testnet", "init", "--hosts", "127.0.0.2,127.0.0.2", "--dir", d, "--p2p-port", 31000, "--api-port", 32000)
    assert r.exit_code == 0, r.output
    a, b = load_config(d / "node1", environ={}), load_config(d / "node2", environ={})
    assert (a.p2p_port, a.api_port, b.p2p_port, b.api_port) == (31000, 32000, 31001, 32001)
    assert a.metrics_host == b.metrics_host == "127.0.0.2"  # loopback: metrics follow the API host
    r = run("testnet", "init", "--hosts", "10.0.0.1", "--dir", tmp_path / "n2", "--listen", "0.0.0.0")
    assert r.exit_code == 0, r.output
    cfg = load_config(tmp_path / "n2" / "node1", environ={})
    assert (cfg.p2p_host, cfg.api_host, cfg.metrics_host) == ("0.0.0.0", "0.0.0.0", "127.0.0.1")


def test_testnet_init_refuses_to_overwrite_and_bad_hosts(tmp_path):
    d = tmp_path / "net"
    assert run("testnet", "init", "--hosts", "10.0.0.1", "--dir", d).exit_code == 0
    r = run("testnet", "init", "--hosts", "10.0.0.1", "--dir", d)
    assert r.exit_code == 1 and "--force" in r.stderr
    assert run("testnet", "init", "--hosts", "10.0.0.1,10.0.0.2", "--dir", d, "--force").exit_code == 0
    r = run("testnet", "init", "--hosts", "10.0.0.1,", "--dir", tmp_path / "n3")
    assert r.exit_code == 2 and "--hosts" in r.stderr
