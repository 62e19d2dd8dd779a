"""`cxl node init`: config.json settings from the key's genesis entry and the flags
(`cli.node_init.init_settings`), and the command refusing a key that is not in the genesis."""

import json

import pytest
from click.testing import CliRunner

from cli.main import cli
from cli.node_init import NotInGenesis, init_settings
from genesis.testnet import make_testnet
from ledger.crypto import Signer
from ledger.keystore import write_key
from node.config import load_config

NET = make_testnet(n_orgs=2, n_validators=2, chain_id="cxl-node-init")
GENESIS = json.loads(json.dumps(NET.doc))
GENESIS["validators"][1] = {**GENESIS["validators"][1], "p2p": "http://10.1.2.3:4001", "api": "http://node2.example:4002"}
KEY1 = GENESIS["validators"][0]["key"]
KEY2 = GENESIS["validators"][1]["key"]
STRANGER = "ab" * 32


def test_hosts_and_ports_come_from_the_genesis_entry_of_the_key():
    plan = init_settings(GENESIS, KEY2)
    assert plan.entry == GENESIS["validators"][1]
    assert plan.settings == {"p2p_host": "10.1.2.3", "p2p_port": 4001, "api_host": "node2.example", "api_port": 4002}


@pytest.mark.parametrize("flags, expected", [
    ({"listen": "0.0.0.0"}, {"p2p_host": "0.0.0.0", "api_host": "0.0.0.0"}),
    ({"p2p_host": "10.9.9.9"}, {"p2p_host": "10.9.9.9", "api_host": "node2.example"}),
    ({"api_host": "127.0.0.1", "listen": "0.0.0.0"}, {"p2p_host": "0.0.0.0", "api_host": "127.0.0.1"}),
    ({"api_port": 9000, "p2p_port": 9001}, {"api_port": 9000, "p2p_port": 9001}),
])
def test_flags_override_the_genesis_entry(flags, expected):
    settings = init_settings(GENESIS, KEY2, **flags).settings
    base = {"p2p_host": "10.1.2.3", "p2p_port": 4001, "api_host": "node2.example", "api_port": 4002}
    assert {k: v for k, v in settings.items() if k != "metrics_host"} == base | expected


def test_metrics_listener_follows_a_loopback_api_host_only():
    doc = json.loads(json.dumps(GENESIS))
    doc["validators"][0] = {**doc["validators"][0], "p2p": "http://127.0.0.3:26601", "api": "http://127.0.0.3:26701"}
    assert init_settings(doc, KEY1).settings["metrics_host"] == "127.0.0.3"
    assert "metrics_host" not in init_settings(GENESIS, KEY2).settings  # a public API host: metrics stay on 127.0.0.1
    assert "metrics_host" not in init_settings(doc, KEY1, listen="0.0.0.0").settings


def test_a_key_not_in_the_genesis_is_refused_unless_allowed():
    with pytest.raises(NotInGenesis) as err:
        init_settings(GENESIS, STRANGER)
    assert err.value.code == "not_in_genesis" and "--allow-not-in-genesis" in err.value.message
    assert "cxl-node-init" in err.value.message
    for allowed, role in (({"allow_not_in_genesis": True}, {}), ({"full": True}, {"role": "full"})):
        plan = init_settings(GENESIS, STRANGER, listen="0.0.0.0", api_port=7000, **allowed)
        assert plan.entry is None and plan.settings == {"api_host": "0.0.0.0", "p2p_host": "0.0.0.0", "api_port": 7000,
                                                        **role}


def test_full_writes_the_role_and_the_accepted_keys_and_peers():
    peer = STRANGER + "@http://10.0.0.9:26601"
    plan = init_settings(GENESIS, STRANGER, full=True, full_node_keys=[STRANGER], peers=[peer])
    assert plan.settings == {"role": "full", "full_node_keys": [STRANGER], "peers": [peer]}


def test_a_generated_key_gets_defaults_and_flags():
    assert init_settings(GENESIS, None).settings == {}
    assert init_settings(GENESIS, None, p2p_host="10.0.0.5").settings == {"p2p_host": "10.0.0.5"}


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _files(tmp_path, signer):
    genesis = tmp_path / "genesis.json"
    genesis.write_text(json.dumps(GENESIS))
    key = tmp_path / "node_key.json"
    write_key(key, signer, name="node")
    return genesis, key


def test_node_init_writes_the_genesis_hosts_into_config(tmp_path):
    genesis, key = _files(tmp_path, NET.validators[1])
    r = _run("node", "init", "--home", tmp_path / "h", "--genesis", genesis, "--node-key", key, "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["validator"] is True
    assert (info["p2p_host"], info["p2p_port"], info["api_host"], info["api_port"]) == ("10.1.2.3", 4001, "node2.example", 4002)
    cfg = load_config(tmp_path / "h", environ={})
    assert (cfg.p2p_host, cfg.api_host) == ("10.1.2.3", "node2.example")
    r = _run("node", "init", "--home", tmp_path / "h", "--genesis", genesis, "--node-key", key, "--force",
             "--listen", "0.0.0.0", "--api-host", "127.0.0.1")
    assert r.exit_code == 0, r.output
    cfg = load_config(tmp_path / "h", environ={})
    assert (cfg.p2p_host, cfg.api_host, cfg.p2p_port) == ("0.0.0.0", "127.0.0.1", 4001)


def test_node_init_refuses_a_key_not_in_the_genesis_and_writes_nothing(tmp_path):
    genesis, key = _files(tmp_path, Signer.generate())
    home = tmp_path / "h"
    r = _run("node", "init", "--home", home, "--genesis", genesis, "--node-key", key)
    assert r.exit_code == 1
    assert "not a validator in the genesis" in r.stderr and "--allow-not-in-genesis" in r.stderr
    assert not home.exists()
    r = _run("node", "init", "--home", home, "--genesis", genesis, "--node-key", key, "--allow-not-in-genesis", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["validator"] is False and (home / "config.json").exists()
