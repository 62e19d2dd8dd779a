"""`cxl tx show HASH --receipt FILE` writes a receipt that `cxl audit verify-receipt`
checks offline with the genesis file alone, and refuses a tampered one."""

from __future__ import annotations

import json
import os

import pytest
from genesis.testnet import make_testnet
from ledger.keystore import write_key
from nodethread import cxl, start_single_validator

NET = make_testnet(n_orgs=4, n_validators=1, chain_id="cxl-receipt-cli")


@pytest.fixture
def node(tmp_path, monkeypatch):
    write_key(tmp_path / "admin.json", NET.admins["org1"])
    thread = start_single_validator(NET, tmp_path)
    monkeypatch.setenv("CXL_NODE", thread.url)
    try:
        yield tmp_path
    finally:
        thread.stop()


def test_tx_show_writes_a_receipt_that_verifies_offline(node):
    to = NET.operators["org2"].address
    sent = json.loads(cxl("tx", "transfer", "--key", node / "admin.json", "--to", to, "--amount", 42, "--json"))
    tx_hash = sent["hash"]
    receipt_file = node / "receipt.json"
    cxl("tx", "show", tx_hash, "--receipt", receipt_file, "--genesis", node / "genesis.json")
    receipt = json.loads(receipt_file.read_text())
    assert receipt["height"] >= 1

    verdict = json.loads(cxl("audit", "verify-receipt", receipt_file, "--genesis", node / "genesis.json", "--json"))
    assert verdict["ok"] is True

    # a receipt whose result was altered no longer verifies
    text = receipt_file.read_text()
    altered = json.loads(text)
    _flip_result(altered)
    bad = node / "bad.json"
    bad.write_text(json.dumps(altered))
    out = cxl("audit", "verify-receipt", bad, "--genesis", node / "genesis.json", "--json", code=1)
    assert json.loads(out)["ok"] is False


def _flip_result(receipt: dict) -> None:
    """Change the recorded amount of the transfer's result wherever the receipt keeps it."""
    def walk(value):
        if isinstance(value, dict):
            for k, v in value.items():
                if k == "amount" and v == 42:
                    value[k] = 43
                else:
                    walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
    before = json.dumps(receipt, sort_keys=True)
    walk(receipt)
    assert json.dumps(receipt, sort_keys=True) != before, "the receipt shows no transfer result to alter"


def test_receipt_for_an_unknown_tx_is_a_clear_error(node):
    out = cxl("tx", "show", "ab" * 32, "--receipt", node / "r.json", code=1)
    assert "knows no transaction" in out


def test_audit_receipt_json_names_the_file_it_wrote(node):
    to = NET.operators["org2"].address
    tx_hash = json.loads(cxl("tx", "transfer", "--key", node / "admin.json", "--to", to, "--amount", 7, "--json"))["hash"]
    out_file = node / "r2.json"
    summary = json.loads(cxl("audit", "receipt", tx_hash, "--genesis", node / "genesis.json", "--node",
                             os.environ["CXL_NODE"], "-o", out_file, "--json"))
    receipt = json.loads(out_file.read_text())
    assert summary == {"file": str(out_file), "tx_hash": tx_hash, "height": receipt["height"]}
