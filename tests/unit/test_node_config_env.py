"""CXL_<FIELD> environment overrides of config.json: every field, typed, checked."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from node.config import ConfigError, NodeConfig, env_name, load_config, metrics_port_of


def _home(tmp_path, doc=None):
    if doc is not None:
        (tmp_path / "config.json").write_text(json.dumps(doc))
    return tmp_path


def test_env_overrides_config_file_and_defaults(tmp_path):
    home = _home(tmp_path, {"api_port": 9000, "log_level": "warning"})
    env = {"CXL_API_PORT": "9100", "CXL_P2P_TLS": "true", "CXL_BLOCK_INTERVAL_MS": "250",
           "CXL_TLS_CA": "/etc/ca.pem", "CXL_NODE": "http://elsewhere", "CXL_PASSPHRASE": "x"}
    cfg = load_config(home, env)
    assert (cfg.api_port, cfg.p2p_tls, cfg.block_interval_ms, cfg.tls_ca) == (9100, True, 250, "/etc/ca.pem")
    assert cfg.log_level == "warning"  # from the file, not overridden


def test_without_env_the_file_decides(tmp_path):
    assert load_config(_home(tmp_path, {"api_port": 9000}), {}).api_port == 9000
    assert load_config(tmp_path / "nowhere", {}) == NodeConfig()


def test_optional_field_can_be_reset_to_null(tmp_path):
    home = _home(tmp_path, {"max_block_txs": 10})
    assert load_config(home, {"CXL_MAX_BLOCK_TXS": "null"}).max_block_txs is None


def test_every_field_has_an_environment_variable(tmp_path):
    """Fields added later are covered too: the loader iterates over the dataclass."""
    key = "ab" * 32  # a list field (full_node_keys, peers): comma-separated
    samples = {"int": "7", "bool": "false", "str": "debug", "tuple[str, ...]": f"{key},{key}"}
    for f in fields(NodeConfig):
        kind = str(f.type).replace("| None", "").strip()
        value = samples[kind]
        env = {env_name(f.name): value}
        if f.name in ("tls_cert", "tls_key"):  # a pair: give both
            env = {"CXL_TLS_CERT": value, "CXL_TLS_KEY": value}
        try:
            cfg = load_config(tmp_path, env)
        except ConfigError as exc:  # out of the field's range: the error names the variable
            assert env_name(f.name) in str(exc)
            continue
        assert getattr(cfg, f.name) == {"int": 7, "bool": False, "str": "debug",
                                        "tuple[str, ...]": (key, key)}[kind], f.name


@pytest.mark.parametrize("env, needle", [
    ({"CXL_API_PORT": "eighty"}, "CXL_API_PORT"),
    ({"CXL_API_PORT": "70000"}, "CXL_API_PORT"),
    ({"CXL_P2P_TLS": "maybe"}, "CXL_P2P_TLS"),
    ({"CXL_LOG_LEVEL": "loud"}, "CXL_LOG_LEVEL"),
    ({"CXL_API_HOST": ""}, "CXL_API_HOST"),
    ({"CXL_TLS_CERT": "/a.pem"}, "tls_cert and tls_key"),
])
def test_bad_environment_value_is_an_error_naming_the_variable(tmp_path, env, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(tmp_path, env)


def test_metrics_port_defaults_next_to_the_api_port():
    assert metrics_port_of(NodeConfig(api_port=26701)) == 26801
    assert metrics_port_of(NodeConfig(api_port=26701, metrics_port=9102)) == 9102
    assert metrics_port_of(NodeConfig(api_port=0)) == 0          # free ports in tests
    assert metrics_port_of(NodeConfig(api_port=65500)) == 0
