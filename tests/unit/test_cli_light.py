"""cli/light.py without a network: the checks that an answer's fields are the proven values,
and the cache of verified validator sets (only verified sets; a broken cache is ignored)."""

from __future__ import annotations

import json

import pytest

from audit.testchain import build_test_chain
from cli import light
from genesis.schema import save as save_genesis
from ledger import accounts
from ledger.lightclient import LightClientError, TrustedSet, follow_change, genesis_set, verify_state_proof
from ledger.market import queries
from node.light_api import change_view
from node.proofs import state_proof
from node.views import jsonable


@pytest.fixture(scope="module")
def bc():
    return build_test_chain(blocks=17, chain_id="cxl-cli-light")


def entries_for(bc, keys):
    proof = state_proof(bc.chain, keys, [])
    return verify_state_proof(proof, chain_id=bc.chain.chain_id, validators=bc.chain.head_validator_keys)


def account_doc(bc, address):
    view = queries.account_view(bc.chain.state(), address)
    return {**jsonable(view), "height": bc.chain.height}


def account_keys(address):
    return [accounts.bal_key(address), accounts.nonce_key(address), accounts.member_key(address)]


def code_of(fn, *args) -> str:
    with pytest.raises(LightClientError) as info:
        fn(*args)
    return info.value.code


def test_an_account_answer_binds_to_its_proven_entries(bc):
    address = bc.net.operators["org1"].address
    entries = entries_for(bc, account_keys(address))
    doc = account_doc(bc, address)
    bind = light.binder("account")
    assert bind(doc, entries, address) == {"address", "balance", "nonce", "member"}
    for field, value in (("balance", doc["balance"] + 1), ("nonce", 0), ("member", None), ("address", "cx1x")):
        assert code_of(bind, {**doc, field: value}, entries, address) == "answer"


def test_a_proof_of_another_account_does_not_cover_the_one_asked_for(bc):
    me, other = bc.net.operators["org1"].address, bc.net.operators["org2"].address
    entries = entries_for(bc, account_keys(other))
    assert code_of(light.binder("account"), account_doc(bc, other) | {"address": me}, entries, me) == "answer"


def test_an_unknown_account_is_proven_absent_and_shown_as_zero(bc):
    address = "cx1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"[:41]
    entries = entries_for(bc, account_keys(address))
    doc = {"address": address, "balance": 0, "nonce": 0, "member": None}
    assert light.binder("account")(doc, entries, address)
    assert code_of(light.binder("account"), {**doc, "balance": 5}, entries, address) == "answer"


def test_params_bind_every_value(bc):
    from ledger.gov_queries import params_view

    entries = entries_for(bc, [accounts.PARAMS_KEY])
    doc = {"params": params_view(bc.chain.state()), "height": bc.chain.height}
    assert light.binder("params")(doc, entries, None) == {"params"}
    forged = json.loads(json.dumps(doc))
    forged["params"]["validator_delay"]["value"] += 1
    assert code_of(light.binder("params"), forged, entries, None) == "answer"
    missing = json.loads(json.dumps(doc))
    del missing["params"]["validator_delay"]
    assert code_of(light.binder("params"), missing, entries, None) == "answer"


def test_a_proposal_binds_its_stored_fields_and_status(bc):
    from ledger import governance
    from ledger.gov_queries import proposal_view

    state = bc.chain.state()
    doc = {**jsonable(proposal_view(state, governance.get_proposal(state, 1), bc.chain.height)),
           "height": bc.chain.height}
    entries = entries_for(bc, [governance.proposal_key(1)])
    bind = light.binder("proposal")
    assert {"actions", "status", "proposer"} <= bind(doc, entries, 1)
    assert code_of(bind, {**doc, "status": "rejected"}, entries, 1) == "answer"
    assert code_of(bind, {**doc, "expires_height": 1}, entries, 1) == "answer"
    assert code_of(bind, doc, entries_for(bc, [governance.proposal_key(99)]), 1) == "answer"  # absent


# -- the cache ------------------------------------------------------------------------------------

@pytest.fixture
def genesis_file(bc, tmp_path):
    path = tmp_path / "genesis.json"
    save_genesis(bc.net.doc, path)
    return str(path)


def verified_sets(bc) -> list[TrustedSet]:
    sets = [genesis_set(bc.net.doc)]
    for h, vals in bc.chain.validator_changes(1, 10):
        sets.append(follow_change(bc.chain.chain_id, sets[-1], change_view(bc.chain, h, vals)))
    return sets


def test_the_cache_round_trips_verified_sets(bc, genesis_file):
    lc = light.LightClient.open(genesis_file)
    assert len(lc.sets) == 1
    lc.sets = verified_sets(bc)
    lc._save_cache()
    again = light.LightClient.open(genesis_file)
    assert again.sets == lc.sets and [s.after for s in again.sets] == [0, 6, 16]


@pytest.mark.parametrize("content", ["not json", json.dumps({"format": "cxl-light/1", "genesis_hash": "00"}),
                                     "SETS_OUT_OF_ORDER", "SETS_OF_ANOTHER_FORMAT"])
def test_a_broken_cache_is_ignored_with_a_warning(bc, genesis_file, content, capsys):
    lc = light.LightClient.open(genesis_file)
    if content.startswith("SETS"):
        sets = [s.to_json() for s in verified_sets(bc)[1:]]
        doc = {"format": "cxl-light/1" if content == "SETS_OUT_OF_ORDER" else "cxl-light/0",
               "genesis_hash": lc.genesis_hash.hex(), "sets": sets[::-1]}
        content = json.dumps(doc)
    lc.cache_path.parent.mkdir(parents=True, exist_ok=True)
    lc.cache_path.write_text(content)
    again = light.LightClient.open(genesis_file)
    assert len(again.sets) == 1  # only the genesis set: nothing unverified is trusted
    assert "ignoring the light-client cache" in capsys.readouterr().err
