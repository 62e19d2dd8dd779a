"""update_validator: a validator's new key and/or endpoints in one proposal, effective
`validator_delay` blocks later like any validator change, with stable refusal codes; and
bad endpoints or keys refused for add_validator, add_node and update_validator."""

from __future__ import annotations

import pytest

from ledger import accounts, governance, nodes
from ledger.block import next_validators_hash, validator_set_hash
from ledger.crypto import Signer, is_valid_point
from ledger.encoding import sha256
from tests.unit.test_governance import NEWKEY, Net

OTHER = Signer(sha256(b"update-validator other key"))
SMALL_ORDER = bytes(32)  # 32 bytes, but the all-zero point: no private key signs for it


def _failure(g, action, args) -> str:
    pid, r = g.pass_(action, args)
    p = g.status(pid)
    assert p["status"] == "failed", p
    assert r.result["status"] == "failed"
    return p["reason"].split(":")[0]


def _propose_code(g, action, args) -> str:
    r = g.block((g.admin("org1"), "propose", {"action": action, "args": args}))[0]
    assert not r.ok, r
    assert g.state.get(b"gov/next") is None  # no proposal id taken
    return r.code


def test_key_rotation_takes_effect_after_delay_with_org_and_endpoints_kept():
    g = Net()
    old_key = g.net.validators[0].public_key
    before = accounts.validators(g.state)[0]
    pid, r = g.pass_("update_validator", {"key": old_key.hex(), "new_key": NEWKEY.public_key.hex()})
    assert r.result["status"] == "executed", g.status(pid)
    h, c = g.chain.height, g.chain
    assert g.state.get(b"validators_next")["height"] == h + c.params["validator_delay"]
    assert c.validator_keys == [old_key]  # h+1 is still decided by the old key
    g.block()  # height h+1 installs the change at its end
    assert c.validator_keys == [NEWKEY.public_key]
    assert accounts.validators(g.state) == [{**before, "key": NEWKEY.public_key}]
    assert c.get_block(h + 1).header.next_validators_hash == next_validators_hash([NEWKEY.public_key])
    [(at, vset)] = c.validator_changes(0, 10)
    assert at == h + 1 and [v["key"] for v in vset] == [NEWKEY.public_key]
    # the new key decides h+2 (the old one may no longer propose)
    g.block(proposer=NEWKEY.public_key)
    assert c.get_block(h + 2).header.validator_set_hash == validator_set_hash([NEWKEY.public_key])


def test_endpoint_move_keeps_the_key_and_the_position_in_the_set():
    g = Net(n_validators=2)
    v0, v1 = (v.public_key for v in g.net.validators)
    pid, r = g.pass_("update_validator", {"key": v0, "p2p": "https://10.9.9.9:443", "api": "http://[fd00::1]:8080/"})
    assert r.result["status"] == "executed", g.status(pid)
    assert accounts.validators(g.state)[0]["p2p"] != "https://10.9.9.9:443"  # not before the delay
    g.block()
    vals = accounts.validators(g.state)
    assert [v["key"] for v in vals] == [v0, v1]  # same order: the leader schedule is unchanged
    assert (vals[0]["p2p"], vals[0]["api"], vals[0]["org"]) == ("https://10.9.9.9:443", "http://[fd00::1]:8080/",
                                                               "org1")
    # only the API endpoint: p2p stays
    g.pass_("update_validator", {"key": v1, "api": "http://node2.example:26701"})
    g.block()
    vals = accounts.validators(g.state)
    assert vals[1]["api"] == "http://node2.example:26701" and vals[1]["p2p"].startswith("http://127.0.0.1:")


def test_state_refusals_have_stable_codes():
    g = Net(n_validators=2)
    v0, v1 = (v.public_key for v in g.net.validators)
    before = accounts.validators(g.state)
    assert _failure(g, "update_validator", {"key": NEWKEY.public_key, "p2p": "http://x:1"}) == "unknown_validator"
    assert _failure(g, "update_validator", {"key": v0, "new_key": v1}) == "validator_exists"
    assert _failure(g, "update_validator", {"key": v0, "p2p": before[0]["p2p"]}) == "no_change"
    assert _failure(g, "update_validator", {"key": v0, "p2p": before[0]["p2p"], "api": before[0]["api"]}) == "no_change"
    g.pass_("add_node", {"org": "org3", "key": OTHER.public_key})
    assert _failure(g, "update_validator", {"key": v0, "new_key": OTHER.public_key}) == "node_exists"
    assert g.state.get(b"validators_next") is None
    g.block()
    assert accounts.validators(g.state) == before


def test_update_sees_pending_changes():
    """The set after pending changes is the one updated: a validator whose removal is
    pending is unknown; one added but not yet active may be updated already."""
    g = Net(n_validators=2)
    g.pool.append(OTHER)
    v1 = g.net.validators[1].public_key
    g.pass_("remove_validator", {"key": v1})
    assert _failure(g, "update_validator", {"key": v1, "api": "http://x:2"}) == "unknown_validator"
    g.block()
    g.net.validators = g.net.validators[:1]
    g.pass_("add_validator", {"org": "org2", "key": OTHER.public_key, "p2p": "http://a:1", "api": "http://a:2"})
    pid, _ = g.pass_("update_validator", {"key": OTHER.public_key, "new_key": NEWKEY.public_key})
    assert g.status(pid)["status"] == "executed", g.status(pid)
    g.block()
    assert [v["key"] for v in accounts.validators(g.state)][1:] == [NEWKEY.public_key]
    assert accounts.validators(g.state)[1]["org"] == "org2"


def test_a_listed_full_node_key_can_take_over_in_one_proposal():
    """remove_node then update_validator, atomically: a synced full node becomes the validator."""
    g = Net()
    v0 = g.net.validators[0].public_key
    g.pass_("add_node", {"org": "org1", "key": NEWKEY.public_key})
    pid = g.block((g.admin("org1"), "propose", {"actions": [
        {"action": "remove_node", "args": {"key": NEWKEY.public_key}},
        {"action": "update_validator", "args": {"key": v0, "new_key": NEWKEY.public_key}}]}))[0].result["proposal"]
    g.vote(pid, "org2")
    g.vote(pid, "org3")
    assert g.status(pid)["status"] == "executed", g.status(pid)
    assert nodes.listed_node_keys(g.state) == []
    g.block()
    assert g.chain.validator_keys == [NEWKEY.public_key]


def test_a_failed_update_in_a_list_applies_nothing():
    g = Net(n_validators=2)
    v0, v1 = (v.public_key for v in g.net.validators)
    pid = g.block((g.admin("org1"), "propose", {"actions": [
        {"action": "update_validator", "args": {"key": v0, "p2p": "http://moved:1"}},
        {"action": "update_validator", "args": {"key": v1, "new_key": v0}}]}))[0].result["proposal"]
    g.vote(pid, "org2")
    r = g.vote(pid, "org3")
    assert (r.result["status"], r.result["error_code"], r.result["failed_action"]) == ("failed", "validator_exists", 1)
    assert g.state.get(b"validators_next") is None


@pytest.mark.parametrize("args,code", [
    ({"key": "zz", "p2p": "http://x:1"}, "bad_key"),
    ({"p2p": "http://x:1"}, "bad_key"),
    ({"key": b"short", "p2p": "http://x:1"}, "bad_key"),
    ({"key": "VALIDATOR", "new_key": "ab" * 31}, "bad_key"),
    ({"key": "VALIDATOR", "new_key": SMALL_ORDER}, "bad_key"),
    ({"key": "VALIDATOR", "new_key": SMALL_ORDER.hex()}, "bad_key"),
    ({"key": "VALIDATOR"}, "bad_payload"),  # no change given
    ({"key": "VALIDATOR", "new_key": None, "p2p": None}, "bad_payload"),
    ({"key": "VALIDATOR", "new_key": "VALIDATOR"}, "bad_payload"),
    ({"key": "VALIDATOR", "org": "org2", "p2p": "http://x:1"}, "bad_payload"),  # the org stays
    ({"key": "VALIDATOR", "p2p": "ftp://x"}, "bad_payload"),
    ({"key": "VALIDATOR", "api": 7}, "bad_payload"),
])
def test_bad_update_proposals_are_refused_when_proposed(args, code):
    g = Net()
    v0 = g.net.validators[0].public_key
    args = {k: (v0 if v == "VALIDATOR" else v) for k, v in args.items()}
    assert _propose_code(g, "update_validator", args) == code


BAD_URLS = ["ftp://x", "http://", "http://x\n", "http:// x", "http://x:0", "http://x:70000", "http://x:abc",
            "http://user@x", "http://user:pw@x:1", "http://-x", "http://x..", "http://[zz]:1", "http://x:1?y",
            "http://" + "a" * 201, "x:1", 1, None, b"http://x"]


@pytest.mark.parametrize("url", BAD_URLS)
@pytest.mark.parametrize("which", ["p2p", "api"])
def test_bad_endpoints_are_refused_for_add_and_update_validator(url, which):
    g = Net()
    good = {"p2p": "http://10.0.0.2:26601", "api": "http://10.0.0.2:26701"}
    add = {"org": "org2", "key": NEWKEY.public_key, **good, which: url}
    assert _propose_code(g, "add_validator", add) == "bad_payload"
    if url is not None:  # None means "no change" for update_validator
        update = {"key": g.net.validators[0].public_key, which: url}
        assert _propose_code(g, "update_validator", update) == "bad_payload"


@pytest.mark.parametrize("url", ["http://x", "http://x:1", "https://node-1.example.com:26601", "http://10.0.0.2:26601/",
                                 "http://[::1]:26601", "http://[fd00::2]/base/path", "http://X.Y",
                                 "http://node_1:26601"])
def test_good_endpoints_are_accepted(url):
    assert governance.normalise_action("add_validator", {"org": "o", "key": NEWKEY.public_key, "p2p": url,
                                                         "api": url})["p2p"] == url
    assert governance.normalise_action("update_validator", {"key": NEWKEY.public_key, "api": url})["api"] == url


@pytest.mark.parametrize("key", ["zz", b"short", None, 5, "ab" * 33])
def test_bad_keys_are_refused_for_add_validator_and_add_node(key):
    g = Net()
    assert _propose_code(g, "add_validator", {"org": "org2", "key": key, "p2p": "http://a:1",
                                              "api": "http://a:2"}) == "bad_payload"
    assert _propose_code(g, "add_node", {"org": "org2", "key": key}) == "bad_key"


def test_is_valid_point():
    assert is_valid_point(NEWKEY.public_key)
    assert not is_valid_point(SMALL_ORDER) and not is_valid_point(b"\x01" + bytes(31))
    assert not is_valid_point(b"short") and not is_valid_point("ab" * 16)


def test_cli_parses_update_validator():
    from cli.gov import _check, parse_actions

    key, new = NEWKEY.public_key.hex(), OTHER.public_key.hex()
    actions = parse_actions(("update-validator", f"key={key}", f"new_key={new}", "p2p=http://h2:26601"))
    assert actions == [{"action": "update_validator", "args": {"key": key, "new_key": new, "p2p": "http://h2:26601"}}]
    _check(actions, "ACTIONS")


@pytest.mark.parametrize("tokens,message", [
    (("update-validator", "key=" + "ab" * 32), "at least one change"),
    (("update-validator", "key=abc", "api=http://x:1"), "32-byte public key"),
    (("update-validator", "key=" + "ab" * 32, "p2p=http://x:99999"), "p2p must be an http"),
])
def test_cli_refuses_a_bad_update_before_signing(tokens, message):
    import click
    from cli.gov import _check, parse_actions

    with pytest.raises(click.BadParameter, match=message):
        _check(parse_actions(tokens), "ACTIONS")


def test_cli_command_signs_an_update_validator_proposal(tmp_path):
    import json

    from click.testing import CliRunner

    from cli.main import cli
    from ledger.keystore import write_key

    key = tmp_path / "admin.json"
    write_key(key, Signer(b"\x05" * 32), name="admin")
    old, new = NEWKEY.public_key.hex(), OTHER.public_key.hex()
    r = CliRunner().invoke(cli, ["gov", "propose", "update-validator", f"key={old}", f"new_key={new}",
                                 "api=http://h2:26701", "--key", str(key), "--sign-only", "--nonce", "0",
                                 "--chain-id", "c", "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["type"] == "propose"
    assert out["payload"] == {"action": "update_validator",
                              "args": {"key": old, "new_key": new, "api": "http://h2:26701"}}
    bad = CliRunner().invoke(cli, ["gov", "propose", "update-validator", f"key={old}", "--key", str(key),
                                   "--sign-only", "--nonce", "0", "--chain-id", "c"])
    assert bad.exit_code == 2 and "at least one change" in bad.output
