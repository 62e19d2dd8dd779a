"""What `cxl node init` writes into config.json: a pure function of the genesis, the node
key and the command-line flags (no files, no network), so every rule is unit-tested.

The rules, in order of precedence for each setting:

* ports: ``--api-port`` / ``--p2p-port``, else the port of the key's genesis entry
  (``validators[].api`` / ``.p2p``), else the `node.config` default;
* listen addresses: ``--api-host`` / ``--p2p-host``, else ``--listen`` (both listeners,
  e.g. ``0.0.0.0`` on a machine behind NAT whose genesis address is not its own), else
  the host of the key's genesis entry, else the default (127.0.0.1);
* the metrics listener stays private: it follows the API host only when that is itself
  a loopback address (so nodes on 127.0.0.2, 127.0.0.3 … do not share 127.0.0.1:26801).

A ``--node-key`` that is not a validator in the genesis is refused (`NotInGenesis`)
unless the node is a full node or ``--allow-not-in-genesis`` says it will be added later
by governance; a generated key cannot be in the genesis and is allowed, with a note.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlparse


class NotInGenesis(Exception):
    """The node key given is not a validator of this genesis (and nothing allows that)."""

    code = "not_in_genesis"

    def __init__(self, key: str, chain_id: str, validators: int):
        self.message = (
            f"the node key {key[:16]}… is not a validator in the genesis of {chain_id} ({validators} validators): "
            "check that you gave the right --node-key and --genesis; to set up a validator that governance "
            "will add later, pass --allow-not-in-genesis")
        super().__init__(self.message)


@dataclass(frozen=True)
class InitPlan:
    settings: dict = field(default_factory=dict)  # NodeConfig fields for init_home
    entry: dict | None = None                       # the key's genesis validator entry, if any


def validator_entry(genesis: dict, public_key: str | None) -> dict | None:
    """The genesis `validators` entry of this node key, or None."""
    if not public_key:
        return None
    return next((v for v in genesis.get("validators", []) if v.get("key") == public_key), None)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def init_settings(genesis: dict, public_key: str | None, *, api_port: int | None = None,
                  p2p_port: int | None = None, api_host: str | None = None, p2p_host: str | None = None,
                  listen: str | None = None, allow_not_in_genesis: bool = False, full: bool = False,
                  full_node_keys=(), peers=()) -> InitPlan:
    """The config.json settings of a new node home (see the module docstring).
    `full` writes role "full"; `full_node_keys` / `peers` are written as given (checked by
    node.config when the home is created).

    `public_key` is the hex key of a given ``--node-key``; None when a key is generated."""
    entry = validator_entry(genesis, public_key)
    if public_key is not None and entry is None and not (allow_not_in_genesis or full):
        raise NotInGenesis(public_key, genesis.get("chain_id", "?"), len(genesis.get("validators", [])))
    g_api = urlparse(entry["api"]) if entry else None
    g_p2p = urlparse(entry["p2p"]) if entry else None
    settings: dict = {}

    def put(name: str, *choices):
        value = next((c for c in choices if c is not None), None)
        if value is not None:
            settings[name] = value

    put("api_port", api_port, g_api.port if g_api else None)
    put("p2p_port", p2p_port, g_p2p.port if g_p2p else None)
    put("api_host", api_host, listen, g_api.hostname if g_api else None)
    put("p2p_host", p2p_host, listen, g_p2p.hostname if g_p2p else None)
    if _is_loopback(settings.get("api_host", "")):
        settings["metrics_host"] = settings["api_host"]
    if full:
        settings["role"] = "full"
    if full_node_keys:
        settings["full_node_keys"] = list(full_node_keys)
    if peers:
        settings["peers"] = list(peers)
    return InitPlan(settings, entry)
