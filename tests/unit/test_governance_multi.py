"""Governance proposals that carry several actions, and the old single-action form.

The single-action payload `{action, args}` of every existing chain must keep executing
byte for byte as before (replay compares every state and results root), so the first
test pins the roots of a fixed history of old-form proposals."""

from __future__ import annotations

import pytest

from genesis.testnet import make_testnet
from ledger import accounts, governance
from ledger.crypto import Signer
from ledger.encoding import sha256

from tests.unit.test_governance import NEWKEY, Net

KEY_A = Signer(sha256(b"multi/a"))
KEY_B = Signer(sha256(b"multi/b"))
NODE_C = Signer(sha256(b"multi/node-c"))


def old_form_history(g: Net) -> list[bytes]:
    """Old-form proposals: executed, failed at execution, rejected, refused payloads."""
    roots = []

    def step(*calls):
        g.block(*calls)
        roots.append(g.chain.head.state_root)
        roots.append(g.chain.get_block(g.chain.height).header.results_root)

    a1, a2, a3, a4 = (g.admin(o) for o in ("org1", "org2", "org3", "org4"))
    step((a1, "propose", {"action": "mint", "args": {"to": NEWKEY.address, "amount": 9}}))
    step((a2, "vote", {"proposal": 1, "approve": True}), (a3, "vote", {"proposal": 1, "approve": True}))
    step((a1, "propose", {"action": "add_member", "args": {"org": "org2", "key": a3.public_key.hex(),
                                                            "role": "operator"}, "expires_in": 50}))
    step((a2, "vote", {"proposal": 2, "approve": True}), (a4, "vote", {"proposal": 2, "approve": True}))
    step((a1, "propose", {"action": "set_param", "args": {"name": "max_block_txs", "value": 500}}),
         (a2, "vote", {"proposal": 3, "approve": False}), (a3, "vote", {"proposal": 3, "approve": False}))
    step((a1, "propose", {"action": "nope", "args": {}}), (a1, "propose", {"args": {}}),
         (a1, "propose", {"action": "add_org", "args": {"org": "Bad!", "name": "x", "admin": "00"}}),
         (a2, "vote", {"proposal": 99, "approve": True}))
    step((a1, "propose", {"action": "add_org", "args": {"org": "neworg", "name": "New",
                                                         "admin": KEY_A.public_key.hex()}}),
         (a2, "vote", {"proposal": 4, "approve": True}), (a3, "vote", {"proposal": 4, "approve": True}))
    return roots


# Results roots recorded with the code before multi-action proposals existed (commit
# 2e76811): what every single-action proposal did, byte for byte. State roots re-recorded
# when the state root became the state tree's root (ledger/statetree.py), and again, with
# the fourth results root, when addresses became bech32 (cx1...): accounts and members are
# keyed by address and the add_member result names the member's address. The other six
# results roots did not move.
OLD_FORM_RESULTS_ROOTS: list[str] = [
    "8ed647de2e0bc925cc7bca328b92848c38da5fc542263835618ab8d5e34c52cc",
    "3ef02a1dbe09eb57cf2b185a27de34d9030eade6ab9d44e57d0d21594e5bf591",
    "6306d0bfb6c3df8efd9b07d4947bea397d60258a1f9de5eed43188766f6a55b0",
    "813a720b82ae9bc8444d883dec29c464f56c45e6e4479d985f1dc8030a1c2a84",
    "855ad85d58dfa767d6862aa6ce373578f1bf39f06f42a14d4827c994ca2f7435",
    "1edf14310073a0a67a31420b47230c0efbbae560a28f229499365fc89189fa0a",
    "63b36db9f26560950eaf6e42be18ced14197ac864e98b7de46fcabd11cb70606",
]
OLD_FORM_STATE_ROOTS: list[str] = [
    "45564fa3c5b327312e2c482691cf6eb044e23538470b3cdbe50975b305c7f71d",
    "a740e331aed43eb7ea46ee4938e52980b648c56afc758236551d532fed60fa80",
    "939322d80676bb3a4bad9fde9dc51b37e1b37a1a7f51a1eabd35435a607dd6d6",
    "8f12cfb737231d9a0890e60992178c908da3e43e703bb8e0d467baa6770dfb6f",
    "50831798e79cbdd37c94b539dc959560f1da0ef42cce12f68ac21349caceca15",
    "eaa5804f97b41f82c7b50d42d39097243d9989bcd7136ecabc05089b2300b682",
    "37344eac6cb2b66aa4ebd4e6ac848c7bfa99730e8cc6123af0623e7a382ca040",
]


def test_old_single_action_proposals_replay_byte_for_byte():
    g = Net()
    roots = [r.hex() for r in old_form_history(g)]
    assert [g.status(i)["status"] for i in (1, 2, 3, 4)] == ["executed", "failed", "rejected", "executed"]
    assert "actions" not in g.status(1)  # the stored map keeps its old shape
    assert roots[1::2] == OLD_FORM_RESULTS_ROOTS
    assert roots[0::2] == OLD_FORM_STATE_ROOTS


@pytest.fixture
def g():
    return Net()


def onboard_actions(org: str = "acme") -> list[dict]:
    """A new organisation with its admin, an operator and a validator: one proposal."""
    return [
        {"action": "add_org", "args": {"org": org, "name": "Acme Compute", "admin": KEY_A.public_key.hex()}},
        {"action": "add_member", "args": {"org": org, "key": KEY_B.public_key.hex(), "role": "operator"}},
        {"action": "add_validator", "args": {"org": org, "key": NODE_C.public_key.hex(),
                                             "p2p": "http://10.0.0.9:26600", "api": "http://10.0.0.9:26700"}},
        {"action": "mint", "args": {"to": KEY_B.address, "amount": 1_000}},
    ]


def pass_multi(g: Net, actions: list[dict]):
    r = g.block((g.admin("org1"), "propose", {"actions": actions}))[0]
    assert r.ok and r.result["status"] == "open", r
    pid = r.result["proposal"]
    assert g.vote(pid, "org2").result["status"] == "open"
    return pid, g.vote(pid, "org3")


def test_one_proposal_adds_an_org_with_members_validator_and_credits(g):
    pid, r = pass_multi(g, onboard_actions())
    assert r.ok and r.result == {"proposal": pid, "status": "executed"}
    state = g.state
    assert accounts.org(state, "acme") == {"id": "acme", "name": "Acme Compute"}
    assert accounts.member(state, KEY_A.address)["role"] == "admin"
    assert accounts.member(state, KEY_B.address) == {"org": "acme", "role": "operator", "key": KEY_B.public_key}
    assert accounts.balance(state, KEY_B.address) == 1_000
    pending = state.get(b"validators_next")
    assert [v["key"] for v in pending["validators"]][-1] == NODE_C.public_key
    p = g.status(pid)
    assert [a["action"] for a in p["actions"]] == ["add_org", "add_member", "add_validator", "mint"]
    assert "action" not in p


def test_a_failing_action_fails_the_whole_proposal_atomically(g):
    actions = onboard_actions()
    # the operator key already belongs to org2: action 1 fails at execution
    actions[1]["args"]["key"] = g.net.operators["org2"].public_key.hex()
    supply = accounts.supply(g.state)
    pid, r = pass_multi(g, actions)
    assert r.ok  # the vote itself is fine; the proposal records the failure
    assert r.result["status"] == "failed"
    assert r.result["error_code"] == "member_exists" and r.result["failed_action"] == 1
    assert r.result["reason"].startswith("actions[1] add_member: member_exists: ")
    state = g.state
    assert accounts.org(state, "acme") is None, "action 0 must not stay applied"
    assert accounts.member(state, KEY_A.address) is None
    assert state.get(b"validators_next") is None
    assert accounts.supply(state) == supply
    p = g.status(pid)
    assert (p["status"], p["error_code"], p["failed_action"]) == ("failed", "member_exists", 1)


@pytest.mark.parametrize("actions, fragment", [
    ([], "1-16"),
    ([{"action": "mint", "args": {"to": NEWKEY.address, "amount": 1}}] * 17, "1-16"),
    ("mint", "1-16"),
    ([{"action": "mint", "args": {"to": NEWKEY.address, "amount": 1}, "extra": 1}], "actions[0] must be"),
    ([{"args": {}}], "actions[0] must be"),
    ([{"action": "mint", "args": {"to": NEWKEY.address, "amount": 1}},
      {"action": "add_member", "args": {"org": "org1", "key": "zz", "role": "admin"}}], "actions[1] (add_member)"),
    ([{"action": "launch", "args": {}}], "actions[0] (launch): unknown governance action"),
])
def test_bad_action_lists_are_refused_before_any_vote(g, actions, fragment):
    before = g.chain.state().get(b"gov/next", 1)
    r = g.block((g.admin("org1"), "propose", {"actions": actions}))[0]
    assert r.code in ("bad_payload", "bad_address", "bad_amount") and fragment in r.message, r
    assert g.chain.state().get(b"gov/next", 1) == before, "no proposal id was taken"


def test_both_forms_in_one_payload_refused(g):
    r = g.block((g.admin("org1"), "propose", {"action": "mint", "args": {"to": NEWKEY.address, "amount": 1},
                                              "actions": [{"action": "mint", "args": {}}]}))[0]
    assert r.code == "bad_payload" and "not both" in r.message


def test_single_org_chain_executes_a_multi_action_proposal_at_once():
    g = Net()
    g.net = make_testnet(n_orgs=1, n_validators=1)
    g.chain = g.net.chain()
    r = g.block((g.admin("org1"), "propose", {"actions": onboard_actions()[:2]}))[0]
    assert r.ok and r.result["status"] == "executed"
    assert accounts.member(g.state, KEY_B.address)["org"] == "acme"


def test_preview_reports_the_action_that_would_fail_without_writing(g):
    actions = onboard_actions()
    state = g.chain.state()
    assert governance.preview(state, 5, {"actions": governance.normalise_actions(actions)}) is None
    actions[0]["args"]["org"] = "org2"  # exists already
    failure = governance.preview(state, 5, {"actions": governance.normalise_actions(actions)})
    assert failure["error_code"] == "org_exists" and failure["failed_action"] == 0
    single = governance.preview(state, 5, {"action": "remove_org", "args": {"org": "zzz"}})
    assert single["error_code"] == "unknown_org" and single["failed_action"] == 0
    assert state.writes == {}


def test_audit_replay_verifies_a_chain_with_multi_action_proposals():
    from audit.replay import replay
    from audit.source import StoreSource
    from audit.testchain import BuiltChain, validator_signer

    net = make_testnet(n_orgs=4, n_validators=4, chain_id="cxl-multi-replay")
    bc = BuiltChain(net, net.chain(), {s.public_key: s for s in net.validators})
    extra = validator_signer("cxl-multi-replay", 4)
    bc.signers[extra.public_key] = extra
    onboard = onboard_actions()
    onboard[2]["args"]["key"] = extra.public_key.hex()  # the new org's validator signs from height 3
    bad = onboard_actions("beta")
    bad[1]["args"]["key"] = net.operators["org1"].public_key.hex()  # member_exists: the whole proposal fails
    admins = net.admins
    bc.add_block([bc.tx(admins["org1"], "propose", {"actions": onboard}),
                  bc.tx(admins["org1"], "propose", {"actions": bad})]
                 + [bc.tx(admins[o], "vote", {"proposal": p, "approve": True}) for p in (1, 2) for o in ("org2", "org3")]
                 # acme joined with proposal 1: 5 organisations now, proposal 2 needs a fourth yes
                 + [bc.tx(admins["org4"], "vote", {"proposal": 2, "approve": True})])
    for _ in range(4):
        bc.add_block([bc.tx(net.operators["org1"], "transfer", {"to": KEY_B.address, "amount": 1})])
    state = bc.chain.state()
    assert governance.get_proposal(state, 1)["status"] == "executed"
    assert governance.get_proposal(state, 2)["status"] == "failed"
    assert extra.public_key in bc.chain.validator_keys
    report = replay(StoreSource(bc.chain.store), net.doc, net.genesis_hash, workers=1)
    assert report.ok, report.text()
    assert report.blocks == 5 and [c.height for c in report.validator_changes] == [3]
