"""Dry runs (`ledger.simulate`): the receipt the next block would give, nothing written."""

from __future__ import annotations

import pytest

from genesis.testnet import make_testnet
from ledger import accounts
from ledger.context import BlockContext
from ledger.crypto import Signer
from ledger.encoding import sha256
from ledger.simulate import SimulationTooLarge, simulate
from ledger.tx import make_tx

NET = make_testnet(n_orgs=4, n_validators=1, chain_id="cxl-sim")
A1, A2 = NET.admins["org1"], NET.admins["org2"]
OP1 = NET.operators["org1"]
STRANGER = Signer(sha256(b"stranger"))
TO = NET.operators["org2"].address


@pytest.fixture
def chain():
    return NET.chain()


def ctx(chain) -> BlockContext:
    return chain.block_context(chain.height + 1, chain.head.time_ms + 1000)


def tx(signer, nonce, kind="transfer", payload=None):
    return make_tx(signer, "cxl-sim", nonce, kind, payload or {"to": TO, "amount": 5})


def run(chain, *txs, pending=None, **kw):
    pending = pending or {}
    return simulate(chain.store, ctx(chain), list(txs), lambda key: pending.get(key, []), **kw)


def test_ok_receipt_and_nothing_written(chain):
    before = dict(chain.store.iterate(b""))
    (r,) = run(chain, tx(OP1, 0))
    assert (r.ok, r.code, r.stage, r.result) == (True, "ok", "execution", {"to": TO, "amount": 5})
    assert dict(chain.store.iterate(b"")) == before


def test_failures_carry_the_execution_code(chain):
    (r,) = run(chain, tx(OP1, 0, payload={"to": TO, "amount": 10**15}))
    assert (r.ok, r.code, r.stage) == (False, "insufficient_funds", "execution")
    (r,) = run(chain, tx(NET.auditors["org1"], 0))
    assert r.code == "unauthorized"
    (r,) = run(chain, tx(A1, 0, "vote", {"proposal": 7, "approve": True}))
    assert r.code == "unknown_proposal"


def commit(chain, *txs):
    block, result = chain.build_block(list(txs), time_ms=chain.head.time_ms + 1000, view=0,
                                      proposer=NET.validators[0].public_key,
                                      last_cert=chain.get_cert(chain.height) if chain.height else None)
    chain.commit_block(block, NET.certify(chain, block), result)


def test_admission_failures(chain):
    (r,) = run(chain, tx(STRANGER, 0))
    assert (r.code, r.stage) == ("unknown_sender", "admission")
    (r,) = run(chain, tx(OP1, 3))
    assert (r.code, r.stage) == ("nonce_gap", "admission") and "next nonce is 0" in r.message
    commit(chain, tx(A2, 0))
    expired = make_tx(OP1, "cxl-sim", 0, "transfer", {"to": TO, "amount": 1}, expiry=chain.height)
    (r,) = run(chain, expired)
    assert r.code == "expired"
    t = tx(OP1, 0)
    assert [x.code for x in run(chain, t, t)] == ["ok", "duplicate"]


def test_nonce_used_after_commit(chain):
    t = tx(OP1, 0)
    commit(chain, t)
    (r,) = run(chain, t)
    assert r.code == "nonce_used"


def test_pending_transactions_of_the_sender_run_first(chain):
    # a proposal pending in the mempool: the vote signed after it sees the proposal
    p = tx(A1, 0, "propose", {"action": "mint", "args": {"to": TO, "amount": 1}})
    follow = tx(A1, 1, "transfer", {"to": TO, "amount": 2})
    (r,) = run(chain, follow, pending={A1.public_key: [p]})
    assert r.ok, r
    (r,) = run(chain, tx(A1, 1, "propose", {"action": "mint", "args": {"to": TO, "amount": 1}}),
               pending={A1.public_key: [p]})
    assert r.result["proposal"] == 2, "the pending proposal took id 1"
    # the pending transaction itself simulates in its own turn
    (r,) = run(chain, p, pending={A1.public_key: [p]})
    assert r.ok and r.result["proposal"] == 1
    # another transaction with a pending one's nonce conflicts
    (r,) = run(chain, tx(A1, 0), pending={A1.public_key: [p]})
    assert (r.code, r.stage) == ("nonce_conflict", "admission") and p.hash.hex() in r.message
    # a nonce beyond the pending run waits: a gap
    (r,) = run(chain, tx(A1, 2), pending={A1.public_key: [p]})
    assert r.code == "nonce_gap" and "after its 1 pending" in r.message


def test_later_transactions_see_earlier_ones(chain):
    balance = accounts.balance(chain.state(), OP1.address)
    a = tx(OP1, 0, payload={"to": TO, "amount": balance})
    b = tx(OP1, 1, payload={"to": TO, "amount": 1})
    assert [r.code for r in run(chain, a, b)] == ["ok", "insufficient_funds"]


def test_governance_preview_flags_a_proposal_that_would_fail(chain):
    good = tx(A1, 0, "propose", {"action": "mint", "args": {"to": TO, "amount": 1}})
    (r,) = run(chain, good)
    assert r.ok and r.result["status"] == "open" and r.preview is None
    bad = tx(A1, 0, "propose", {"actions": [
        {"action": "mint", "args": {"to": TO, "amount": 1}},
        {"action": "add_member", "args": {"org": "org1", "key": OP1.public_key.hex(), "role": "operator"}}]})
    (r,) = run(chain, bad)
    assert r.code == "ok" and not r.ok
    assert r.preview["error_code"] == "member_exists" and r.preview["failed_action"] == 1


def test_bounded(chain):
    pending = {OP1.public_key: [tx(OP1, n, payload={"to": TO, "amount": 1}) for n in range(10)]}
    with pytest.raises(SimulationTooLarge):
        run(chain, tx(OP1, 10), pending=pending, max_steps=5)
