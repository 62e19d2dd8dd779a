"""Replay over in-memory chains: what it accepts, and what it names when something is wrong."""

from __future__ import annotations

import json

import pytest

from audit.replay import replay
from audit.sigcheck import SignatureChecker
from audit.source import StoreSource
from audit.testchain import build_test_chain
from ledger import accounts
from ledger.encoding import decode, encode
from ledger.tx import decode_tx, make_tx
from ledger.txtypes import TX_TYPES, TxType


@pytest.fixture(scope="module")
def bc():
    return build_test_chain(blocks=30)


def run(bc, **kw):
    return replay(StoreSource(bc.chain.store), bc.net.doc, bc.net.genesis_hash, **kw)


@pytest.mark.parametrize("workers,pool", [(1, "inline"), (2, "process"), (2, "thread")])
def test_clean_chain_verifies_with_every_pool(bc, workers, pool):
    report = run(bc, workers=workers, pool=pool)
    assert report.ok and report.failure is None, report.text()
    assert (report.blocks, report.transactions) == (30, len(bc.tx_hashes))
    assert report.head_hash == bc.chain.head.block_hash and report.state_root == bc.chain.head.state_root
    assert [(c.height, len(c.keys)) for c in report.validator_changes] == [(7, 5), (17, 4)]
    assert len(report.validators_seen) == 5
    assert report.pool == pool


def test_report_json_and_text(bc):
    report = run(bc, workers=1)
    data = json.loads(json.dumps(report.to_json()))
    assert data["ok"] and data["blocks"] == 30 and data["verified_height"] == 30
    assert data["validator_changes"][0]["height"] == 7 and data["tx_per_s"] > 0
    assert "result:        OK" in report.text()


def test_upto_stops_at_a_height(bc):
    report = run(bc, workers=1, upto=10)
    assert report.ok and report.blocks == 10 and [c.height for c in report.validator_changes] == [7]


def test_progress_reports_every_height(bc):
    seen = []
    assert run(bc, workers=1, progress=lambda h, head: seen.append((h, head))).ok
    assert seen == [(h, 30) for h in range(1, 31)]


def _bad_signature(stx):
    wire = decode(stx.raw)
    wire[1] = bytes([wire[1][0] ^ 1]) + wire[1][1:]
    return decode_tx(encode(wire))


@pytest.mark.parametrize("workers", [1, 2])
def test_certified_block_with_a_bad_signature_fails(workers):
    """A quorum of validators can certify anything; replay still checks every signature."""
    bc = build_test_chain(blocks=3)
    op = bc.net.operators["org1"]
    bad = _bad_signature(bc.tx(op, "transfer", {"to": bc.net.operators["org2"].address, "amount": 5}))
    bc.add_block([bad], verified={bad.hash})
    report = run(bc, workers=workers)
    assert (report.failure.height, report.failure.code) == (4, "bad_signature")
    assert bad.hash.hex() in report.failure.message
    assert report.blocks == 3


def test_conservation_is_checked_after_every_block(monkeypatch):
    """A transfer handler that creates money: roots match (built with the same bug), the invariant does not."""

    def leaky(state, ctx, payload):
        accounts.credit(state, payload["to"], payload["amount"])
        return {}

    monkeypatch.setitem(TX_TYPES, "transfer", TxType("transfer", frozenset({"admin", "operator"}), leaky))
    bc = build_test_chain(blocks=2)
    report = run(bc, workers=1)
    assert (report.failure.height, report.failure.code) == (1, "conservation")
    assert report.failure.got - report.failure.expected == 1000 + 10 + 1000 + 11 + 1000 + 12


class _NoGenesisMeta(StoreSource):
    """A source that does not say which genesis it runs (like a node API without it)."""

    def genesis_hash(self):
        return None


def test_chain_from_another_genesis_fails_at_block_1(bc):
    other = build_test_chain(blocks=2, chain_id=bc.net.doc["chain_id"], balance=10**12 + 1)
    report = replay(_NoGenesisMeta(other.chain.store), bc.net.doc, bc.net.genesis_hash, workers=1)
    assert (report.failure.height, report.failure.code) == (1, "bad_state_root")
    assert report.failure.expected != report.failure.got


def test_chain_with_another_chain_id_fails_at_block_1(bc):
    other = build_test_chain(blocks=2, chain_id="cxl-other")
    report = replay(_NoGenesisMeta(other.chain.store), bc.net.doc, bc.net.genesis_hash, workers=1)
    assert (report.failure.height, report.failure.code) == (1, "wrong_chain")
    assert (report.failure.expected, report.failure.got) == (bc.net.doc["chain_id"], "cxl-other")


def test_signature_checker_pools_agree():
    bc = build_test_chain(blocks=1)
    op = bc.net.operators["org1"]
    good = [make_tx(op, "cxl-audit", i, "transfer", {"to": op.address, "amount": 1}) for i in range(600)]
    bad = _bad_signature(good[7])
    raws = [t.raw for t in good] + [bad.raw, b"\x00garbage"]
    expect = frozenset(t.hash for t in good)
    for kind, workers in (("inline", 1), ("thread", 2), ("process", 2)):
        with SignatureChecker(workers, kind) as checker:
            assert checker.submit(raws).result() == expect


def test_fast_signing_bytes_are_the_ledgers_signing_bytes():
    from audit.sigcheck import fast_signing_bytes, verify_chunk

    bc = build_test_chain(blocks=1)
    op = bc.net.operators["org1"]
    payloads = [{"to": op.address, "amount": 1}, {"to": op.address, "amount": 2**40, "memo": "ünïcode ✓"},
                {"action": "mint", "args": {"to": op.address, "amount": 5}}, {}]
    for i, payload in enumerate(payloads):
        for expiry in (0, 7, 2**40):
            stx = make_tx(op, "cxl-audit", i, "transfer", payload, expiry)
            message, sig, sender = fast_signing_bytes(stx.raw)
            assert (message, sig, sender) == (stx.tx.signing_bytes(), stx.signature, stx.tx.sender)
            assert verify_chunk([stx.raw], 65536) == stx.hash
    assert fast_signing_bytes(b"\x92") is None and fast_signing_bytes(b"\x00" * 80) is None
    stx = make_tx(op, "cxl-audit", 0, "transfer", payloads[0])
    assert verify_chunk([stx.raw], len(stx.raw) - 1) == b""  # oversize: left to validation


def test_a_broken_pool_only_costs_speed(bc, monkeypatch):
    """If signature workers die, replay still verifies every signature (in validate_block)."""
    from concurrent.futures.process import BrokenProcessPool

    from audit import sigcheck

    class Broken:
        def result(self):
            raise BrokenProcessPool("a worker died")

    monkeypatch.setattr(sigcheck.SignatureChecker, "submit", lambda self, raws: sigcheck.Pending([Broken()]))
    report = run(bc, workers=2)
    assert report.ok and report.transactions == len(bc.tx_hashes)


def test_replay_rebuilds_the_state_tree_itself():
    # replay recomputes every state root with its own tree, from the genesis: a source
    # whose tree nodes are gone (or wrong) replays the same, and the validator changes it
    # reports carry state proofs against the certified roots
    from ledger.statetree import PREFIX_NODE, verify_proof
    from ledger.block import Header

    built = build_test_chain(blocks=12)
    store = built.chain.store
    store.write({k: None for k, _ in store.iterate(PREFIX_NODE)})
    report = replay(StoreSource(store), built.net.doc, built.net.genesis_hash, workers=1)
    assert report.ok, report.text()
    assert report.state_root == built.chain.head.state_root
    change = report.validator_changes[0]
    header = Header.from_wire(decode(change.evidence["header"]))
    assert verify_proof(header.state_root, b"validators", change.evidence["validators_value"],
                        change.evidence["state_proof"])
    assert [v["key"] for v in decode(change.evidence["validators_value"])] == change.keys
