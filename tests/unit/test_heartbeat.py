"""Heartbeat blocks (ledger/heartbeat.py): when an empty block is due, the next time one
will be, replicas refusing empty blocks that are not due, and replay accepting the ones
that are."""

from __future__ import annotations

import random

import pytest

from audit.replay import replay
from audit.source import StoreSource
from audit.testchain import BuiltChain
from genesis.testnet import make_testnet
from ledger import governance, heartbeat
from ledger.errors import BlockInvalid, GenesisError, TxRejected
from ledger.genesis_state import DEFAULT_PARAMS
from ledger.heartbeat import DUE_TRANSITION, INTERVAL, VALIDATOR_ACTIVATION, due_reason, next_due_ms
from ledger.market.common import DUE_ACCEPT, earliest_due_ms, schedule
from ledger.market.harness import MarketNet, listing_payload
from ledger.state import StateView
from ledger.store.memory import MemoryStore
from genesis.schema import validate

GENESIS = 1_700_000_000_000
PRICE = 1_000_000
ACCEPT_WINDOW = 3_600_000  # the default accept_window_ms


def quiet_chain(**params):
    net = make_testnet(n_orgs=4, n_validators=1, params=params or None)
    return net, net.chain(MemoryStore())


def heartbeat_block(net, chain, time_ms):
    block, result = chain.build_block([], time_ms=time_ms, view=0, proposer=net.validators[0].public_key,
                                      last_cert=chain.get_cert(chain.height) if chain.height else None)
    return block, result


# --- the rule -------------------------------------------------------------------------


def test_interval_heartbeat_is_due_exactly_after_the_interval():
    _, chain = quiet_chain()
    state = chain.state()
    assert heartbeat.interval_ms(chain.params) == DEFAULT_PARAMS["heartbeat_interval_ms"] == 60_000
    assert due_reason(state, GENESIS, GENESIS + 1) is None
    assert due_reason(state, GENESIS, GENESIS + 59_999) is None
    assert due_reason(state, GENESIS, GENESIS + 60_000) == INTERVAL
    assert due_reason(state, GENESIS, GENESIS + 10**9) == INTERVAL
    assert next_due_ms(state, GENESIS) == GENESIS + 60_000


def test_interval_is_a_chain_parameter():
    _, chain = quiet_chain(heartbeat_interval_ms=5_000)
    assert due_reason(chain.state(), GENESIS, GENESIS + 4_999) is None
    assert due_reason(chain.state(), GENESIS, GENESIS + 5_000) == INTERVAL
    assert next_due_ms(chain.state(), GENESIS) == GENESIS + 5_000


def test_zero_interval_means_no_interval_heartbeats():
    _, chain = quiet_chain(heartbeat_interval_ms=0)
    state = chain.state()
    assert due_reason(state, GENESIS, GENESIS + 365 * 86_400_000) is None
    assert next_due_ms(state, GENESIS) is None


def test_a_due_market_item_makes_a_heartbeat_due_at_its_time():
    net, chain = quiet_chain(heartbeat_interval_ms=0)
    m = MarketNet(net, chain=chain)
    P, T = net.operators["org1"], net.operators["org2"]
    assert m.send(P, "listing_create", listing_payload(units=2)).code == "ok"
    r = m.send(T, "lease_open", {"listing": 1, "units": 1, "hours": 1, "max_price": PRICE})
    assert r.code == "ok"
    opened = chain.head.time_ms
    deadline = opened + ACCEPT_WINDOW  # the lease's acceptance deadline is in the due index
    state = chain.state()
    assert earliest_due_ms(state) == deadline
    assert next_due_ms(state, opened) == deadline
    assert due_reason(state, opened, deadline - 1) is None
    assert due_reason(state, opened, deadline) == DUE_TRANSITION
    assert due_reason(state, opened, deadline + 1) == DUE_TRANSITION


def test_the_earliest_item_wins_and_it_is_read_from_the_first_key():
    _, chain = quiet_chain()
    state = chain.state()
    assert earliest_due_ms(state) is None
    schedule(state, GENESIS, GENESIS + 900_000, DUE_ACCEPT, 2)
    schedule(state, GENESIS, GENESIS + 30_000, DUE_ACCEPT, 1)
    schedule(state, GENESIS, GENESIS + 86_400_000 * 40, DUE_ACCEPT, 3)  # another coarse bucket
    assert earliest_due_ms(state) == GENESIS + 30_000
    assert next_due_ms(state, GENESIS) == GENESIS + 30_000  # before the 60 s interval
    assert due_reason(state, GENESIS, GENESIS + 30_000) == DUE_TRANSITION


def test_a_pending_validator_change_makes_every_block_until_it_installs_due():
    _, chain = quiet_chain(heartbeat_interval_ms=0)
    state = chain.state()
    state.put(b"validators_next", {"height": 5, "validators": []})
    assert due_reason(state, GENESIS, GENESIS + 1) == VALIDATOR_ACTIVATION
    assert next_due_ms(state, GENESIS) == GENESIS + 1


def test_reasons_are_checked_in_order():
    _, chain = quiet_chain()
    state = chain.state()
    state.put(b"validators_next", {"height": 5, "validators": []})
    assert due_reason(state, GENESIS, GENESIS + 60_000) == VALIDATOR_ACTIVATION
    schedule(state, GENESIS, GENESIS + 10, DUE_ACCEPT, 1)
    assert due_reason(state, GENESIS, GENESIS + 60_000) == DUE_TRANSITION


@pytest.mark.parametrize("parent,time", [(GENESIS, GENESIS), (GENESIS, GENESIS - 1), (GENESIS, "soon"),
                                         (GENESIS, True), (-1, GENESIS), (GENESIS, 1.5)])
def test_bad_times_are_refused_with_a_clear_error(parent, time):
    _, chain = quiet_chain()
    with pytest.raises(ValueError, match="time"):
        due_reason(chain.state(), parent, time)


def test_next_due_agrees_with_the_rule_at_every_time():
    rng = random.Random(20261203)
    for interval in (0, 1, 60_000):
        _, chain = quiet_chain(heartbeat_interval_ms=interval)
        for case in range(30):
            state = chain.state()
            parent = GENESIS + rng.randint(0, 10**6)
            if rng.random() < 0.5:
                schedule(state, parent, parent + rng.randint(1, 200_000), DUE_ACCEPT, case + 1)
            if rng.random() < 0.2:
                state.put(b"validators_next", {"height": 9, "validators": []})
            due = next_due_ms(state, parent)
            for t in (parent + 1, parent + rng.randint(1, 300_000), (due or parent + 2) - 1, due or parent + 3):
                if t <= parent:
                    continue
                assert (due_reason(state, parent, t) is not None) == (due is not None and t >= due), (interval, case, t)


# --- the parameter ---------------------------------------------------------------------


def test_genesis_checks_the_parameter_and_keeps_old_genesis_states_as_they_were():
    net, chain = quiet_chain()
    # not set in the genesis: not in the genesis state (older chains replay byte for byte), read as the default
    assert "heartbeat_interval_ms" not in chain.params
    _, set_chain = quiet_chain(heartbeat_interval_ms=0)
    assert set_chain.params["heartbeat_interval_ms"] == 0
    doc = dict(net.doc, params={"heartbeat_interval_ms": -1})
    with pytest.raises(GenesisError, match="heartbeat_interval_ms"):
        validate(doc)
    with pytest.raises(GenesisError, match="heartbeat_interval_ms"):
        validate(dict(net.doc, params={"heartbeat_interval_ms": 86_400_001}))


def test_governance_may_set_the_interval_within_bounds():
    assert governance.normalise_action("set_param", {"name": "heartbeat_interval_ms", "value": 0})["value"] == 0
    assert governance.normalise_action("set_param", {"name": "heartbeat_interval_ms", "value": 86_400_000})
    for bad in (-1, 86_400_001, "60000", None):
        with pytest.raises(TxRejected) as exc:
            governance.normalise_action("set_param", {"name": "heartbeat_interval_ms", "value": bad})
        assert exc.value.code == "bad_payload"


# --- replicas: the chain refuses empty blocks that are not due ----------------------------


def test_the_chain_refuses_an_empty_block_that_is_not_due_and_changes_nothing():
    net, chain = quiet_chain()
    before = (chain.head, list(chain.store.iterate(b"")))
    block, _ = heartbeat_block(net, chain, GENESIS + 59_999)
    with pytest.raises(BlockInvalid) as exc:
        chain.validate_block(block)
    assert exc.value.code == "empty_block_not_due"
    assert (chain.head, list(chain.store.iterate(b""))) == before


def test_the_chain_accepts_a_due_empty_block():
    net, chain = quiet_chain()
    block, _ = heartbeat_block(net, chain, GENESIS + 60_000)
    result = chain.validate_block(block)
    chain.commit_block(block, net.certify(chain, block), result)
    assert chain.height == 1 and chain.get_block(1).txs == ()
    # the interval counts from the new parent
    with pytest.raises(BlockInvalid) as exc:
        chain.validate_block(heartbeat_block(net, chain, GENESIS + 60_001)[0])
    assert exc.value.code == "empty_block_not_due"


def test_a_heartbeat_runs_the_due_transition_on_a_quiet_chain():
    net, chain = quiet_chain(heartbeat_interval_ms=0)
    m = MarketNet(net, chain=chain)
    P, T = net.operators["org1"], net.operators["org2"]
    m.send(P, "listing_create", listing_payload(units=2))
    lid = m.send(T, "lease_open", {"listing": 1, "units": 1, "hours": 1, "max_price": PRICE}).result["lease"]
    due = chain.next_heartbeat_ms()
    with pytest.raises(BlockInvalid):
        chain.validate_block(heartbeat_block(net, chain, due - 1)[0])
    block, _ = heartbeat_block(net, chain, due)
    result = chain.validate_block(block)
    chain.commit_block(block, net.certify(chain, block), result)
    assert chain.state().get(b"mkt/ls/" + lid.to_bytes(8, "big"))["status"] == "expired"
    assert chain.next_heartbeat_ms() is None  # nothing left to run, no interval


def test_a_block_with_transactions_needs_no_heartbeat_reason():
    net, chain = quiet_chain(heartbeat_interval_ms=0)
    m = MarketNet(net, chain=chain)
    r = m.send(net.operators["org1"], "listing_create", listing_payload(units=2), advance_ms=1)
    assert r.code == "ok" and chain.height == 1


# --- audit replay ------------------------------------------------------------------------------


def test_replay_accepts_a_chain_with_heartbeat_blocks():
    net = make_testnet(n_orgs=4, n_validators=4, chain_id="cxl-hb")
    bc = BuiltChain(net, net.chain(MemoryStore()), {s.public_key: s for s in net.validators})
    ops = [net.operators[o] for o in sorted(net.operators)]
    for h in range(1, 7):
        chain = bc.chain
        if h % 2:
            bc.add_block([bc.tx(ops[0], "transfer", {"to": ops[1].address, "amount": 10})])
            continue
        keys = chain.validator_keys
        block, result = chain.build_block([], time_ms=chain.next_heartbeat_ms(), view=0, proposer=keys[0],
                                          last_cert=chain.get_cert(chain.height))
        assert chain.heartbeat_due(block.header.time_ms) == INTERVAL
        chain.commit_block(block, bc.certify(block), result)
    assert [len(bc.chain.get_block(h).txs) for h in range(1, 7)] == [1, 0, 1, 0, 1, 0]
    report = replay(StoreSource(bc.chain.store), net.doc, net.genesis_hash, workers=1)
    assert report.ok and report.blocks == 6, report.text()


def test_state_first_raw_sees_own_writes_and_deletes():
    store = MemoryStore()
    base = StateView(store)
    for k in (b"p/b", b"p/d"):
        base.put(k, 1)
    store.write(base.store_writes())
    view = StateView(store)
    assert view.first_raw(b"p/")[0] == b"p/b"
    view.delete(b"p/b")
    assert view.first_raw(b"p/")[0] == b"p/d"
    child = view.child()
    child.put(b"p/a", 2)
    assert child.first_raw(b"p/")[0] == b"p/a"
    child.delete(b"p/a")
    child.delete(b"p/d")
    assert child.first_raw(b"p/") is None
    assert view.first_raw(b"q/") is None


def test_replay_names_an_empty_block_that_was_not_due():
    net = make_testnet(n_orgs=4, n_validators=4, chain_id="cxl-hb")
    bc = BuiltChain(net, net.chain(MemoryStore()), {s.public_key: s for s in net.validators})
    chain = bc.chain
    block, result = chain.build_block([], time_ms=GENESIS + 1_000, view=0, proposer=chain.validator_keys[0],
                                      last_cert=None)
    chain.commit_block(block, bc.certify(block), result)  # a store written without the check
    report = replay(StoreSource(chain.store), net.doc, net.genesis_hash, workers=1)
    assert not report.ok and report.failure.code == "empty_block_not_due" and report.failure.height == 1
    assert str(GENESIS + 60_000) in str(report.failure.expected)


def test_a_governance_change_of_the_interval_applies_from_the_next_block():
    from audit.testchain import governance_block

    net = make_testnet(n_orgs=4, n_validators=4, chain_id="cxl-hb")
    bc = BuiltChain(net, net.chain(MemoryStore()), {s.public_key: s for s in net.validators})
    assert bc.chain.next_heartbeat_ms() == GENESIS + 60_000
    bc.add_block(governance_block(bc, "set_param", {"name": "heartbeat_interval_ms", "value": 5_000}))
    head = bc.chain.head.time_ms
    assert bc.chain.params["heartbeat_interval_ms"] == 5_000
    assert bc.chain.next_heartbeat_ms() == head + 5_000
    bc.add_block(governance_block(bc, "set_param", {"name": "heartbeat_interval_ms", "value": 0}))
    assert bc.chain.next_heartbeat_ms() is None
    # out of bounds: the proposal is refused and nothing changes
    before = bc.chain.params
    receipts = bc.chain.receipts(bc.add_block(
        governance_block(bc, "set_param", {"name": "heartbeat_interval_ms", "value": -5})).height)
    assert receipts[0].code == "bad_payload" and "heartbeat_interval_ms" in receipts[0].message
    assert bc.chain.params == before
