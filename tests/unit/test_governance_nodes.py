"""Governance registry of full nodes: add_node / remove_node, their stable codes, and the
keys p2p admits as full nodes (ledger.nodes.listed_node_keys)."""

from __future__ import annotations

import pytest

from ledger import governance, nodes
from ledger.crypto import Signer
from ledger.encoding import sha256
from tests.unit.test_governance import NEWKEY, Net

OTHER = Signer(sha256(b"other full node"))


@pytest.fixture
def g():
    return Net()


def test_add_node_lists_the_key_with_its_endpoint(g):
    pid, r = g.pass_("add_node", {"org": "org2", "key": NEWKEY.public_key.hex(), "host": "10.1.2.3", "port": 26601})
    assert r.result["status"] == "executed", g.status(pid)
    assert nodes.listed_node_keys(g.state) == [NEWKEY.public_key]
    entry = nodes.listed_node(g.state, NEWKEY.public_key)
    assert entry == {"org": "org2", "key": NEWKEY.public_key, "host": "10.1.2.3", "port": 26601}
    assert nodes.node_p2p_url(entry) == "http://10.1.2.3:26601"


def test_add_node_without_endpoint_and_remove_node(g):
    g.pass_("add_node", {"org": "org3", "key": OTHER.public_key})
    entry = nodes.listed_node(g.state, OTHER.public_key)
    assert entry == {"org": "org3", "key": OTHER.public_key} and nodes.node_p2p_url(entry) is None
    pid, r = g.pass_("remove_node", {"key": OTHER.public_key.hex()})
    assert g.status(pid)["status"] == "executed"
    assert nodes.listed_node_keys(g.state) == []


def _failure(g, action, args) -> str:
    pid, _ = g.pass_(action, args)
    p = g.status(pid)
    assert p["status"] == "failed", p
    return p["reason"].split(":")[0]


def test_state_refusals_have_stable_codes(g):
    assert _failure(g, "add_node", {"org": "nobody", "key": NEWKEY.public_key}) == "unknown_org"
    assert _failure(g, "remove_node", {"key": NEWKEY.public_key}) == "unknown_node"
    validator = g.net.validators[0].public_key
    assert _failure(g, "add_node", {"org": "org1", "key": validator}) == "node_is_validator"
    g.pass_("add_node", {"org": "org2", "key": NEWKEY.public_key})
    assert _failure(g, "add_node", {"org": "org3", "key": NEWKEY.public_key}) == "node_exists"
    assert nodes.listed_node(g.state, NEWKEY.public_key)["org"] == "org2"  # unchanged


def test_a_validator_being_removed_may_be_listed_in_the_same_proposal():
    g = Net(n_validators=2)
    leaving = g.net.validators[1].public_key
    pid = g.block((g.admin("org1"), "propose", {"actions": [
        {"action": "remove_validator", "args": {"key": leaving}},
        {"action": "add_node", "args": {"org": "org1", "key": leaving}}]}))[0].result["proposal"]
    g.vote(pid, "org2")
    g.vote(pid, "org3")
    assert g.status(pid)["status"] == "executed", g.status(pid)
    assert nodes.listed_node_keys(g.state) == [leaving]


@pytest.mark.parametrize("action,args,code", [
    ("add_node", {"org": "org2", "key": "zz"}, "bad_key"),
    ("add_node", {"org": "org2", "key": b"short"}, "bad_key"),
    ("add_node", {"org": "org2"}, "bad_key"),
    ("remove_node", {"key": "12"}, "bad_key"),
    ("add_node", {"org": "Bad Org", "key": NEWKEY.public_key}, "bad_payload"),
    ("add_node", {"org": "org2", "key": NEWKEY.public_key, "host": "h"}, "bad_payload"),
    ("add_node", {"org": "org2", "key": NEWKEY.public_key, "host": "h x", "port": 1}, "bad_payload"),
    ("add_node", {"org": "org2", "key": NEWKEY.public_key, "host": "h", "port": 70000}, "bad_payload"),
    ("add_node", {"org": "org2", "key": NEWKEY.public_key, "p2p": "http://x"}, "bad_payload"),
])
def test_bad_node_proposals_are_refused_and_change_nothing(g, action, args, code):
    r = g.block((g.admin("org1"), "propose", {"action": action, "args": args}))[0]
    assert r.code == code, r
    assert g.state.get(b"gov/next") is None
    assert nodes.listed_node_keys(g.state) == []


def test_removing_an_org_removes_its_full_nodes(g):
    g.pass_("add_node", {"org": "org4", "key": NEWKEY.public_key})
    g.pass_("add_node", {"org": "org3", "key": OTHER.public_key})
    g.pass_("remove_org", {"org": "org4"})
    assert nodes.listed_node_keys(g.state) == [OTHER.public_key]


def test_node_actions_are_known_to_the_cli_parser():
    assert {"add_node", "remove_node"} <= set(governance.ACTIONS)


def test_cli_parses_add_node_with_hyphen_and_integer_port():
    from cli.gov import _check, parse_actions

    key = NEWKEY.public_key.hex()
    actions = parse_actions(("add-node", "org=org2", f"key={key}", "host=node5.example", "port=26601"))
    assert actions == [{"action": "add_node", "args": {"org": "org2", "key": key, "host": "node5.example",
                                                        "port": 26601}}]
    _check(actions, "ACTIONS")
    assert parse_actions(("remove-node", f"key={key}")) == [{"action": "remove_node", "args": {"key": key}}]


def test_cli_refuses_a_bad_node_key_before_signing():
    import click
    from cli.gov import _check, parse_actions

    with pytest.raises(click.BadParameter, match="32-byte public key"):
        _check(parse_actions(("add-node", "org=org2", "key=abc")), "ACTIONS")
