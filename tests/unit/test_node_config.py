"""Node home layout and config.json: defaults, errors that name the field, init_home."""

from __future__ import annotations

import json
import stat

import pytest

from genesis.schema import save as save_genesis
from genesis.testnet import make_testnet
from ledger.keystore import read_key_document, write_key

from node.config import NodeConfig, config_from_dict, init_home, load_config, load_node_key, with_overrides
from node.errors import ConfigError

NET = make_testnet(n_validators=1)


def test_missing_config_means_defaults(tmp_path):
    assert load_config(tmp_path) == NodeConfig()


@pytest.mark.parametrize("doc,field", [
    ({"api_port": "80"}, "api_port"),
    ({"api_port": 70000}, "api_port"),
    ({"mempool_max_txs": True}, "mempool_max_txs"),
    ({"log_level": "loud"}, "log_level"),
    ({"p2p_tls": "yes"}, "p2p_tls"),
    ({"tls_cert": "a.pem"}, "tls_cert"),
    ({"apiport": 1}, "apiport"),
    ({"state_versions_kept": 0}, "state_versions_kept"),
    ({"state_versions_kept": "many"}, "state_versions_kept"),
])
def test_bad_fields_are_named(doc, field):
    with pytest.raises(ConfigError) as e:
        config_from_dict(doc)
    assert field in str(e.value)


def test_state_versions_kept_default_and_override():
    from ledger.statetree import DEFAULT_VERSIONS_KEPT

    assert NodeConfig().state_versions_kept == DEFAULT_VERSIONS_KEPT == 256
    assert config_from_dict({"state_versions_kept": 10}).state_versions_kept == 10


def test_bad_json_says_where(tmp_path):
    (tmp_path / "config.json").write_text("{oops")
    with pytest.raises(ConfigError, match="line 1"):
        load_config(tmp_path)


def test_overrides_are_checked():
    assert with_overrides(NodeConfig(), api_port=9000).api_port == 9000
    with pytest.raises(ConfigError, match="api_port"):
        with_overrides(NodeConfig(), api_port=0)


def test_init_home_layout(tmp_path):
    save_genesis(NET.doc, tmp_path / "g.json")
    write_key(tmp_path / "k.json", NET.validators[0])
    nh = init_home(tmp_path / "home", tmp_path / "g.json", tmp_path / "k.json", api_port=9100, log_level="debug")
    assert nh.data_dir.is_dir() and nh.genesis_file.exists()
    assert stat.S_IMODE(nh.key_file.stat().st_mode) == 0o600
    assert load_node_key(nh.path).public_key == NET.validators[0].public_key
    cfg = load_config(nh.path)
    assert cfg.api_port == 9100 and cfg.log_level == "debug" and cfg.p2p_port == NodeConfig().p2p_port
    assert json.loads(nh.config_file.read_text())["api_port"] == 9100
    with pytest.raises(ConfigError, match="already a node home"):
        init_home(nh.path, tmp_path / "g.json")
    init_home(nh.path, tmp_path / "g.json", overwrite=True)  # keeps the existing key
    assert load_node_key(nh.path).public_key == NET.validators[0].public_key


def test_init_home_generates_a_key_and_refuses_bad_input(tmp_path):
    save_genesis(NET.doc, tmp_path / "g.json")
    nh = init_home(tmp_path / "a", tmp_path / "g.json")
    assert read_key_document(nh.key_file)["encrypted"] is False
    nh2 = init_home(tmp_path / "b", tmp_path / "g.json", passphrase="pw")
    assert read_key_document(nh2.key_file)["encrypted"] is True
    with pytest.raises(ConfigError, match="passphrase"):
        load_node_key(nh2.path)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError, match="genesis"):
        init_home(tmp_path / "c", tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="api_port"):
        init_home(tmp_path / "d", tmp_path / "g.json", api_port="x")
