"""Receipts: built from a chain or from the node API's proof JSON, verified with the genesis alone."""

from __future__ import annotations

import base64
import copy
import json

import pytest
from click.testing import CliRunner

from audit.receipt import ReceiptError, build_receipt, receipt_from_chain, verify_receipt
from audit.testchain import build_test_chain, validator_signer
from cli.audit import audit_group
from genesis.schema import save as save_genesis
from ledger.block import Certificate, Header, commit_signing_bytes
from ledger.crypto import Signer
from ledger.encoding import decode, encode, sha256
from node.views import proof_view


@pytest.fixture(scope="module")
def bc():
    return build_test_chain(blocks=30)


@pytest.fixture(scope="module")
def late(bc):
    """A receipt for the last transaction: both validator changes must be proven."""
    return json.loads(json.dumps(receipt_from_chain(bc.chain, bc.tx_hashes[-1])))


def verify(bc, receipt):
    return verify_receipt(receipt, bc.net.doc, bc.net.genesis_hash)


def fails(bc, receipt, code):
    with pytest.raises(ReceiptError) as err:
        verify(bc, receipt)
    assert err.value.code == code, err.value.message
    return err.value


@pytest.mark.parametrize("which,changes", [(0, []), (40, [7]), (-1, [7, 17])])
def test_receipts_verify_and_walk_the_validator_changes(bc, which, changes):
    receipt = json.loads(json.dumps(receipt_from_chain(bc.chain, bc.tx_hashes[which])))
    summary = verify(bc, receipt)
    assert summary["tx_hash"] == bc.tx_hashes[which].hex()
    assert summary["code"] == "ok" and summary["validator_changes_walked"] == changes
    assert summary["height"] == receipt["header"]["decoded"]["height"]


def test_receipt_from_the_api_proof_json_is_the_same(bc, late):
    proof = proof_view(bc.chain.tx_proof(bc.tx_hashes[-1]), bc.tx_hashes[-1])
    from_api = build_receipt(json.loads(json.dumps(proof)), genesis_hash=bc.net.genesis_hash,
                             validator_changes=late["validator_changes"])
    assert json.loads(json.dumps(from_api)) == late


def test_wrong_genesis(bc, late):
    other = build_test_chain(blocks=1, balance=10**12 + 1)
    with pytest.raises(ReceiptError) as err:
        verify_receipt(late, other.net.doc, other.net.genesis_hash)
    assert err.value.code == "wrong_genesis"


def test_missing_validator_changes(bc, late):
    r = copy.deepcopy(late)
    r["validator_changes"] = r["validator_changes"][:1]
    fails(bc, r, "unknown_validator_set")
    r["validator_changes"] = late["validator_changes"][1:]
    fails(bc, r, "bad_validator_change")


def test_forged_validator_set_in_the_state_proof(bc, late):
    # the validator set is proven by a state-tree inclusion proof against the installing
    # block's certified state root: a forged value, a tampered or another block's proof fail
    r = copy.deepcopy(late)
    change = r["validator_changes"][0]
    sets = decode(bytes.fromhex(change["validators_value"]))
    sets[0]["key"] = Signer(sha256(b"attacker")).public_key
    change["validators_value"] = encode(sets).hex()
    fails(bc, r, "bad_validator_change")

    r = copy.deepcopy(late)
    proof = bytearray(bytes.fromhex(r["validator_changes"][0]["state_proof"]))
    proof[-1] ^= 1  # the leaf's value hash
    r["validator_changes"][0]["state_proof"] = proof.hex()
    fails(bc, r, "bad_validator_change")

    r = copy.deepcopy(late)
    r["validator_changes"][0]["state_proof"] = "c0"  # msgpack nil: not a proof
    fails(bc, r, "bad_proof")


def test_certificate_by_outsiders(bc, late):
    r = copy.deepcopy(late)
    header = Header.from_wire(decode(base64.b64decode(r["header"]["raw"])))
    outsiders = [Signer(sha256(bytes([i]))) for i in range(3)]
    msg = commit_signing_bytes(header.chain_id, 0, header.height, header.hash)
    cert = Certificate.build(header.height, 0, header.hash, {s.public_key: s.sign(msg) for s in outsiders})
    r["certificate"] = {"raw": base64.b64encode(cert.encode()).decode()}
    fails(bc, r, "bad_certificate")


def test_certificate_by_a_removed_validator_quorum(bc, late):
    """Validators 0, 1, 2 were a quorum once; validator 0 left at height 17."""
    r = copy.deepcopy(late)
    header = Header.from_wire(decode(base64.b64decode(r["header"]["raw"])))
    signers = [validator_signer("cxl-audit", i) for i in (0, 1, 2)]
    msg = commit_signing_bytes(header.chain_id, 0, header.height, header.hash)
    cert = Certificate.build(header.height, 0, header.hash, {s.public_key: s.sign(msg) for s in signers})
    r["certificate"] = {"raw": base64.b64encode(cert.encode()).decode()}
    fails(bc, r, "bad_certificate")


def test_tampered_transaction_result_and_paths(bc, late):
    r = copy.deepcopy(late)
    raw = bytearray(base64.b64decode(r["tx"]["raw"]))
    raw[-1] ^= 1
    r["tx"]["raw"] = base64.b64encode(bytes(raw)).decode()
    r.pop("tx_hash")
    fails(bc, r, "bad_signature")

    r = copy.deepcopy(late)
    r["index"] = (r["index"] + 1) % r["tx_count"]
    fails(bc, r, "bad_tx_proof")

    r = copy.deepcopy(late)
    r["result"]["raw"] = base64.b64encode(encode(["insufficient_funds", "", {}])).decode()
    r["result"]["code"] = "insufficient_funds"
    fails(bc, r, "bad_receipt_proof")

    r = copy.deepcopy(late)
    r["result"]["code"] = "insufficient_funds"
    fails(bc, r, "bad_receipt_file")


def test_malformed_file(bc):
    fails(bc, {"format": "cxl-receipt/1"}, "bad_receipt_file")
    fails(bc, {"format": "something else"}, "bad_receipt_file")


def test_cli_verify_receipt(bc, late, tmp_path):
    save_genesis(bc.net.doc, tmp_path / "genesis.json")
    (tmp_path / "r.json").write_text(json.dumps(late))
    runner = CliRunner()
    out = runner.invoke(audit_group, ["verify-receipt", str(tmp_path / "r.json"), "--genesis", str(tmp_path / "genesis.json")])
    assert out.exit_code == 0, out.output
    assert "receipt verifies" in out.output and "heights [7, 17]" in out.output
    bad = copy.deepcopy(late)
    bad["index"] = (bad["index"] + 1) % bad["tx_count"]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    out = runner.invoke(audit_group, ["verify-receipt", str(tmp_path / "bad.json"), "--genesis",
                                      str(tmp_path / "genesis.json"), "--json"])
    assert out.exit_code == 1 and json.loads(out.output)["code"] == "bad_tx_proof"
