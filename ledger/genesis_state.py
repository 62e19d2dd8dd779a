"""The state at height 0, built from a validated genesis document.

The document is the plain dict that `genesis.load` returns (hex strings for keys); this
module turns it into state writes and version 0 of the state tree, whose root is the
state root at height 0 (a function of the genesis state alone: chain id and genesis time
are bound by every header and certificate instead).
"""

from __future__ import annotations

from ledger import accounts
from ledger.crypto import address_of
from ledger.state import StateView
from ledger.statetree import TreeUpdate, apply_writes

DEFAULT_PARAMS: dict[str, int] = {
    "block_interval_ms": 100,
    "max_block_txs": 2000,
    "view_timeout_ms": 2000,
    "rotation_blocks": 30,
    "max_tx_bytes": 64 * 1024,
    "time_skew_ms": 2000,
    "gov_threshold_num": 2,
    "gov_threshold_den": 3,
    "validator_delay": 2,
    "accept_window_ms": 3_600_000,
    "dispute_window_ms": 86_400_000,
    "usage_period_ms": 3_600_000,
    "heartbeat_interval_ms": 60_000,  # ledger/heartbeat.py; 0 = empty blocks only for due transitions
}
# Parameters added after chains were already running. A genesis document that does not
# set one leaves it out of the genesis state, so those chains' state (and every state
# root after it) replays byte for byte; the code reading it applies the default above
# (`ledger.heartbeat.interval_ms`). Governance `set_param` writes it like any other.
LATER_PARAMS = frozenset({"heartbeat_interval_ms"})


def genesis_view(base, doc: dict) -> StateView:
    state = StateView(base)
    params = {name: value for name, value in DEFAULT_PARAMS.items() if name not in LATER_PARAMS}
    params.update(doc.get("params", {}))
    state.put(b"params", params)
    for org in doc["orgs"]:
        state.put(accounts.org_key(org["id"]), {"id": org["id"], "name": org["name"]})
        for m in org["members"]:
            key = bytes.fromhex(m["key"])
            state.put(accounts.member_key(address_of(key)), {"org": org["id"], "role": m["role"], "key": key})
    state.put(
        b"validators",
        [{"key": bytes.fromhex(v["key"]), "org": v["org"], "p2p": v["p2p"], "api": v["api"]} for v in doc["validators"]],
    )
    total = 0
    for entry in doc.get("balances", []):
        accounts.credit(state, entry["address"], entry["amount"])
        total += entry["amount"]
    state.put(b"supply", total)
    return state


def genesis_tree(state: StateView) -> TreeUpdate:
    """Version 0 of the state tree: the root at height 0 and the node writes that store it."""
    return apply_writes(state.store(), 0, state.writes)
