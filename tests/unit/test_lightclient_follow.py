"""A light client following validator-set changes from blocks alone (ledger/lightclient.py,
docs/protocol.md §6.2), against a certified test chain whose set changes twice: validator 4
is added by block 6 (deciding from 7), validator 0 removed by block 16 (deciding from 17)."""

from __future__ import annotations

import base64
import copy

import pytest

from audit.testchain import build_test_chain, validator_signer
from ledger.block import Certificate, Header, commit_signing_bytes
from ledger.crypto import Signer
from ledger.encoding import decode, sha256
from ledger.lightclient import (LightClientError, TrustedSet, follow_change, genesis_set, genesis_state_root,
                                set_deciding, verify_state_proof, verify_tx_proof)
from node.light_api import change_view
from node.proofs import state_proof
from node.views import b64, proof_view


@pytest.fixture(scope="module")
def bc():
    return build_test_chain(blocks=20, chain_id="cxl-light")


@pytest.fixture(scope="module")
def changes(bc):
    return [change_view(bc.chain, h, vals) for h, vals in bc.chain.validator_changes(1, 100)]


def chain_id(bc) -> str:
    return bc.chain.chain_id


def follow_all(bc, changes) -> list[TrustedSet]:
    sets = [genesis_set(bc.net.doc)]
    for ch in changes:
        sets.append(follow_change(chain_id(bc), sets[-1], ch))
    return sets


def code_of(fn, *args, **kw) -> str:
    with pytest.raises(LightClientError) as info:
        fn(*args, **kw)
    return info.value.code


def test_the_index_lists_both_changes_with_the_blocks_that_commit_to_them(bc, changes):
    assert [c["height"] for c in changes] == [6, 16]
    assert [len(c["validators"]) for c in changes] == [5, 4]
    assert all(c["state_proof"] for c in changes)  # both heights are still kept


def test_following_the_changes_yields_the_set_that_certifies_the_head(bc, changes):
    sets = follow_all(bc, changes)
    assert [s.after for s in sets] == [0, 6, 16]
    assert sets[-1].keys == bc.chain.validator_keys
    proof = state_proof(bc.chain, [b"supply"], ["supply"])
    entries = verify_state_proof(proof, chain_id=chain_id(bc), validators=set_deciding(sets, 20).keys)
    assert decode(entries[b"supply"]) > 0
    # the genesis set alone does not decide height 20: the client must follow the changes
    assert code_of(verify_state_proof, proof, chain_id=chain_id(bc), validators=sets[0].keys) == "validators_hash"


def test_set_deciding_picks_the_set_in_force_at_each_height(bc, changes):
    sets = follow_all(bc, changes)
    assert [set_deciding(sets, h).after for h in (1, 6, 7, 16, 17, 99)] == [0, 0, 6, 6, 16, 16]
    assert code_of(set_deciding, sets, 0) == "height"


def test_a_gap_is_refused(bc, changes):
    """Skipping the change at block 6: block 16 was not decided by the genesis set."""
    assert code_of(follow_change, chain_id(bc), genesis_set(bc.net.doc), changes[1]) == "vset_gap"


def test_a_change_given_twice_or_out_of_order_is_refused(bc, changes):
    after_first = follow_change(chain_id(bc), genesis_set(bc.net.doc), changes[0])
    assert code_of(follow_change, chain_id(bc), after_first, changes[0]) == "vset_order"


def test_a_forged_change_signed_by_the_wrong_set_is_refused(bc, changes):
    """A header claiming the trusted set decided it, committing to the attackers' set, and
    certified by the attackers: refused for its certificate."""
    trusted = genesis_set(bc.net.doc)
    real = Header.from_wire(decode(base64.b64decode(changes[0]["header_raw"])))
    attackers = [Signer(sha256(f"attacker/{i}".encode())) for i in range(4)]
    from ledger.block import next_validators_hash

    forged = Header(**{**{f: getattr(real, f) for f in Header.__slots__},
                       "next_validators_hash": next_validators_hash([a.public_key for a in attackers])})
    msg = commit_signing_bytes(chain_id(bc), forged.view, forged.height, forged.hash)
    cert = Certificate.build(forged.height, forged.view, forged.hash, {a.public_key: a.sign(msg) for a in attackers})
    change = {**changes[0], "header_raw": b64(forged.encode()), "certificate_raw": b64(cert.encode()),
              "state_proof": None,
              "validators": [{"org": "evil", "key": a.public_key.hex(), "p2p": "x", "api": "y"} for a in attackers]}
    assert code_of(follow_change, chain_id(bc), trusted, change) == "cert_signature"
    # the real certificate does not certify the forged header either
    assert code_of(follow_change, chain_id(bc), trusted, {**change, "certificate_raw": changes[0]["certificate_raw"]}) \
        == "certificate"


def test_a_quorum_short_certificate_is_refused(bc, changes):
    trusted = genesis_set(bc.net.doc)
    real = Header.from_wire(decode(base64.b64decode(changes[0]["header_raw"])))
    msg = commit_signing_bytes(chain_id(bc), real.view, real.height, real.hash)
    two = {s.public_key: s.sign(msg) for s in bc.net.validators[:2]}  # 2 of 4: the quorum is 3
    cert = Certificate.build(real.height, real.view, real.hash, two)
    assert code_of(follow_change, chain_id(bc), trusted, {**changes[0], "certificate_raw": b64(cert.encode())}) \
        == "cert_signature"


def test_a_tampered_new_set_is_refused(bc, changes):
    trusted = genesis_set(bc.net.doc)
    swapped = copy.deepcopy(changes[0])
    swapped["validators"][-1]["key"] = validator_signer("elsewhere", 9).public_key.hex()
    assert code_of(follow_change, chain_id(bc), trusted, swapped) == "vset_hash"
    # same keys, another endpoint: next_validators_hash binds keys only, the state proof binds the rest
    moved = copy.deepcopy(changes[0])
    moved["validators"][0]["api"] = "http://evil.example:1"
    assert code_of(follow_change, chain_id(bc), trusted, moved) == "vset_proof"
    reordered = copy.deepcopy(changes[0])
    reordered["validators"].reverse()
    assert code_of(follow_change, chain_id(bc), trusted, reordered) == "vset_proof"


def test_a_change_of_another_chain_is_refused(bc, changes):
    assert code_of(follow_change, "cxl-other", genesis_set(bc.net.doc), changes[0]) == "chain_id"


def test_malformed_changes_are_refused_with_malformed(bc, changes):
    trusted = genesis_set(bc.net.doc)
    for broken in ({**changes[0], "header_raw": "!!"}, {**changes[0], "validators": []},
                   {**changes[0], "height": "6"}, [], {**changes[0], "validators": [{"key": "zz"}]}):
        assert code_of(follow_change, chain_id(bc), trusted, broken) == "malformed"


def test_trusted_sets_round_trip_through_json(bc, changes):
    sets = follow_all(bc, changes)
    assert [TrustedSet.from_json(s.to_json()) for s in sets] == sets


def test_the_genesis_state_root_is_the_chains_height_0_root(bc):
    proof = state_proof_at_genesis(bc)
    assert verify_state_proof(proof, chain_id=chain_id(bc), validators=[],
                              genesis_state_root=genesis_state_root(bc.net.doc)) == {}


def state_proof_at_genesis(bc) -> dict:
    fresh = bc.net.chain(None)
    return state_proof(fresh, [], [])


def test_a_transaction_proof_verifies_and_tampering_is_caught(bc, changes):
    sets = follow_all(bc, changes)
    tx_hash = bc.tx_hashes[-1]
    raw = bc.chain.tx_proof(tx_hash)
    proof = proof_view(raw, tx_hash)
    keys = set_deciding(sets, proof["height"]).keys
    out = verify_tx_proof(proof, chain_id=chain_id(bc), validators=keys, tx_hash=tx_hash)
    assert out["height"] == 20 and out["block_hash"] == bc.chain.get_block(20).hash
    bad = {**proof, "tx_proof": [("00" * 32)] + proof["tx_proof"][1:]}
    assert code_of(verify_tx_proof, bad, chain_id=chain_id(bc), validators=keys, tx_hash=tx_hash) == "tx_proof"
    other = bc.tx_hashes[0]
    assert code_of(verify_tx_proof, proof, chain_id=chain_id(bc), validators=keys, tx_hash=other) == "tx_proof"
    assert code_of(verify_tx_proof, proof, chain_id=chain_id(bc), validators=sets[0].keys, tx_hash=tx_hash) \
        == "validators_hash"
