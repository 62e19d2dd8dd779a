"""The governance registry of full (non-validator) nodes.

A full node follows the chain by certified block sync; validators and other full nodes
accept its p2p session only if its key is listed here (or in the operator's config
`full_node_keys`). Governance adds and removes entries (`add_node`, `remove_node` in
ledger/governance.py). State: ``nodes/<key hex>`` = ``{org, key, host?, port?}``; the
key in hex keeps the entries in one readable prefix, sorted by key.
"""

from __future__ import annotations

from ledger.state import StateView

PREFIX = b"nodes/"


def node_key(key: bytes) -> bytes:
    return PREFIX + bytes(key).hex().encode()


def listed_node(state: StateView, key: bytes) -> dict | None:
    return state.get(node_key(key))


def listed_nodes(state: StateView) -> list[dict]:
    """Every listed full node, in key order."""
    return [value for _, value in state.items(PREFIX)]


def listed_node_keys(state: StateView) -> list[bytes]:
    """The public keys of every listed full node, in key order."""
    return [bytes(value["key"]) for value in listed_nodes(state)]


def node_p2p_url(entry: dict) -> str | None:
    """The p2p URL of a listed node that gave an endpoint (host and port), else None."""
    host, port = entry.get("host"), entry.get("port")
    if not host or not port:
        return None
    return f"http://{host}:{port}"


__all__ = ["PREFIX", "listed_node", "listed_node_keys", "listed_nodes", "node_key", "node_p2p_url"]
