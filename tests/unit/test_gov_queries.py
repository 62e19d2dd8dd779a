"""Governance read views (`ledger.gov_queries`): tallies, derived expiry, organisations."""

from __future__ import annotations

from ledger import gov_queries as gq
from ledger.crypto import Signer
from ledger.encoding import sha256

from tests.unit.test_governance import NEWKEY, Net

NODE = Signer(sha256(b"queries/node"))


def test_tally_counts_only_current_orgs_and_shows_removed_votes():
    g = Net()
    pid = g.propose("mint", {"to": NEWKEY.address, "amount": 1})
    g.vote(pid, "org4", approve=False)
    view = gq.proposal_view(g.state, g.status(pid), g.chain.height)
    assert view["tally"] == {"yes": 1, "no": 1, "not_voted": 2, "orgs": 4, "threshold": "2/3", "yes_needed": 3}
    # org4 leaves: its "no" is shown but no longer counted, and 2 of 3 is now enough
    g.pass_("remove_org", {"org": "org4"})
    view = gq.proposal_view(g.state, g.status(pid), g.chain.height)
    assert view["tally"] == {"yes": 1, "no": 0, "not_voted": 2, "orgs": 3, "threshold": "2/3", "yes_needed": 2}
    assert view["votes"][-1] == {"org": "org4", "vote": "no (removed org, not counted)"}


def test_expired_is_derived_from_the_head_height():
    g = Net()
    pid = g.propose("mint", {"to": NEWKEY.address, "amount": 1}, expires_in=2)
    p = g.status(pid)
    assert gq.proposal_status(p, p["expires_height"] - 1) == "open"
    assert gq.proposal_status(p, p["expires_height"]) == "expired"
    assert p["status"] == "open", "nothing is written"
    assert gq.list_proposals(g.state, p["expires_height"], status="expired")["items"][0]["id"] == pid
    assert gq.list_proposals(g.state, p["expires_height"], status="open")["items"] == []


def test_paging_newest_first():
    g = Net()
    ids = [g.propose("mint", {"to": NEWKEY.address, "amount": n}) for n in (1, 2, 3)]
    page = gq.list_proposals(g.state, g.chain.height, limit=2)
    assert [x["id"] for x in page["items"]] == ids[::-1][:2] and page["next_cursor"] == ids[1]
    page = gq.list_proposals(g.state, g.chain.height, before=page["next_cursor"], limit=2)
    assert [x["id"] for x in page["items"]] == [ids[0]] and page["next_cursor"] is None
    assert gq.list_proposals(g.state, g.chain.height, before=1)["items"] == []


def test_org_view_members_validators_and_pending_change():
    g = Net()
    g.pass_("add_validator", {"org": "org2", "key": NODE.public_key.hex(), "p2p": "http://h:1", "api": "http://h:2"})
    view = gq.org_view(g.state, "org2")
    assert {m["role"] for m in view["members"]} == {"admin", "operator", "auditor"}
    assert view["validators"] == []
    assert [v["key"] for v in view["validators_next"]["validators"]] == [NODE.public_key]
    assert gq.org_view(g.state, "nope") is None
    summary = {o["id"]: o for o in gq.list_orgs(g.state)}
    assert summary["org1"]["validators"] == 1 and summary["org2"]["members"] == {"admin": 1, "operator": 1,
                                                                               "auditor": 1}


def test_params_view_has_value_default_and_range():
    g = Net()
    g.pass_("set_param", {"name": "max_block_txs", "value": 77})
    p = gq.params_view(g.state)
    assert p["max_block_txs"] == {"value": 77, "default": 2000, "range": [1, 100_000]}
    assert set(p) >= {"gov_threshold_num", "gov_threshold_den", "validator_delay"}
