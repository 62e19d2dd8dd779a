"""Market lifecycles through real blocks: escrow, acceptance, usage, disputes, settlement,
time-driven transitions, attestations."""

from __future__ import annotations

import pytest

from genesis.testnet import make_testnet
from ledger import accounts
from ledger.encoding import sha256
from ledger.market import queries, sealing
from ledger.market.common import HOUR_MS
from ledger.market.harness import MarketNet, check_invariants, listing_payload
from ledger.market.settlement import penalty
from ledger.market.usage import resolution_bytes

DAY_MS = 24 * HOUR_MS
DIGEST = sha256(b"measurement")
PRICE = 1_000_000  # micro-credits per unit-hour


@pytest.fixture
def mk():
    net = make_testnet()
    m = MarketNet(net)
    m.P, m.T, m.T3 = net.operators["org1"], net.operators["org2"], net.operators["org3"]
    m.A4 = net.auditors["org4"]
    yield m
    assert check_invariants(m.state, m.chain.head.time_ms) == []


def ok(receipt):
    assert receipt.code == "ok", receipt
    return receipt.result


def open_active(m, units=2, hours=3, listing=None):
    """A listing (unless given) and an accepted lease on it; returns the lease id."""
    if listing is None:
        listing = ok(m.send(m.P, "listing_create", listing_payload()))["listing"]
    lease = ok(m.send(m.T, "lease_open", {"listing": listing, "units": units, "hours": hours, "max_price": PRICE}))["lease"]
    sealed = sealing.seal_access(m.T.public_key, b"ssh tenant@10.1.2.3 -i key")
    ok(m.send(m.P, "lease_accept", {"lease": lease, "attestation_digest": DIGEST, "sealed_access": sealed}))
    return lease


def lease(m, lid):
    return queries.get_lease(m.state, lid)


def test_penalty_formula():
    sla = {"uptime_permille": 999, "penalty_permille": 10, "penalty_cap_permille": 500}
    assert penalty(2_000_000, 999, sla) == 0
    assert penalty(2_000_000, 1000, sla) == 0
    assert penalty(2_000_000, 990, sla) == 180_000          # 9 points x 10 = 90 per-mille
    assert penalty(2_000_000, 900, sla) == 1_000_000        # 99 x 10 = 990, capped at 500
    assert penalty(7, 990, sla) == 0                        # integer floor: 7 * 90 // 1000


def test_open_escrows_the_whole_price_and_reserves_units(mk):
    bal = accounts.balance(mk.state, mk.T.address)
    listing = ok(mk.send(mk.P, "listing_create", listing_payload()))["listing"]
    res = ok(mk.send(mk.T, "lease_open", {"listing": listing, "units": 3, "hours": 4, "max_price": PRICE + 5}))
    assert res["escrowed"] == 3 * 4 * PRICE
    st = mk.state
    assert accounts.balance(st, mk.T.address) == bal - 12 * PRICE
    assert accounts.escrow_total(st) == 12 * PRICE
    assert queries.get_listing(st, listing)["available_units"] == 7
    assert lease(mk, res["lease"])["status"] == "pending"
    assert queries.account_view(st, mk.T.address)["escrow_as_tenant"] == 12 * PRICE


def test_full_lifecycle_worked_example(mk):
    """The worked example of docs/marketplace.md."""
    bal_t = accounts.balance(mk.state, mk.T.address)
    bal_p = accounts.balance(mk.state, mk.P.address)
    lid = open_active(mk, units=2, hours=3)
    mk.advance_hours(1)
    ok(mk.send(mk.P, "usage_report", {"lease": lid, "period": 0, "unit_hours": 2, "uptime_permille": 990}))
    ok(mk.send(mk.T, "usage_confirm", {"lease": lid, "period": 0}))
    s1 = ok(mk.send(mk.T, "lease_settle", {"lease": lid}))
    assert s1 == {"lease": lid, "settlement": 1, "kind": "usage", "provider_payout": 1_820_000, "tenant_refund": 0}
    assert mk.send(mk.P, "lease_settle", {"lease": lid}).code == "nothing_to_settle"
    mk.advance_hours(1)
    ok(mk.send(mk.P, "usage_report", {"lease": lid, "period": 1, "unit_hours": 2, "uptime_permille": 1000}))
    ok(mk.send(mk.T, "usage_dispute", {"lease": lid, "period": 1, "reason": "one unit never came up"}))
    sig = mk.P.sign(resolution_bytes(mk.chain.chain_id, lid, 1, 1, 1000))
    ok(mk.send(mk.T, "usage_resolve", {"lease": lid, "period": 1, "unit_hours": 1, "uptime_permille": 1000,
                                       "signer": mk.P.public_key, "signature": sig}))
    mk.advance_hours(1)
    assert lease(mk, lid)["status"] == "ended"
    ok(mk.send(mk.P, "usage_report", {"lease": lid, "period": 2, "unit_hours": 2, "uptime_permille": 1000}))
    mk.advance(DAY_MS)   # the report confirms automatically; every period is reported: final settlement
    out = lease(mk, lid)
    assert out["status"] == "settled"
    assert [(s["kind"], s["periods"], s["charge"], s["penalty"], s["provider_payout"], s["tenant_refund"])
            for s in out["settlement_records"]] == [
        ("usage", [0], 2_000_000, 180_000, 1_820_000, 0),
        ("final", [1, 2], 3_000_000, 0, 3_000_000, 1_180_000),
    ]
    assert [r["confirmed_by"] for r in out["reports"]] == ["tenant", "resolution", "auto"]
    st = mk.state
    assert accounts.balance(st, mk.T.address) == bal_t - 6_000_000 + 1_180_000
    assert accounts.balance(st, mk.P.address) == bal_p + 4_820_000
    assert accounts.escrow_total(st) == 0
    assert queries.get_listing(st, out["listing"])["reserved"] == 0
    assert mk.send(mk.T, "lease_settle", {"lease": lid}).code == "lease_settled"


def test_unaccepted_lease_expires_at_the_deadline_and_refunds(mk):
    bal = accounts.balance(mk.state, mk.T.address)
    listing = ok(mk.send(mk.P, "listing_create", listing_payload()))["listing"]
    lid = ok(mk.send(mk.T, "lease_open", {"listing": listing, "units": 4, "hours": 2, "max_price": PRICE}))["lease"]
    deadline = lease(mk, lid)["accept_deadline_ms"]
    mk.advance(deadline - mk.time_ms - 1)
    assert lease(mk, lid)["status"] == "pending"
    mk.advance(1)   # block time reaches the deadline: the hook expires it
    out = lease(mk, lid)
    assert out["status"] == "expired" and out["escrow"] == 0
    assert out["settlement_records"][0]["kind"] == "refund"
    assert accounts.balance(mk.state, mk.T.address) == bal
    assert queries.get_listing(mk.state, listing)["available_units"] == 10
    r = mk.send(mk.P, "lease_accept", {"lease": lid, "attestation_digest": DIGEST, "sealed_access": b"x" * 64})
    assert r.code == "accept_window_closed"


def test_reject_and_tenant_cancel_refund_in_full(mk):
    bal = accounts.balance(mk.state, mk.T.address)
    listing = ok(mk.send(mk.P, "listing_create", listing_payload()))["listing"]
    a = ok(mk.send(mk.T, "lease_open", {"listing": listing, "units": 1, "hours": 1, "max_price": PRICE}))["lease"]
    b = ok(mk.send(mk.T, "lease_open", {"listing": listing, "units": 1, "hours": 1, "max_price": PRICE}))["lease"]
    assert ok(mk.send(mk.P, "lease_reject", {"lease": a, "reason": "no_capacity"}))["refund"] == PRICE
    assert ok(mk.send(mk.T, "lease_close", {"lease": b, "reason": "no_longer_needed"}))["status"] == "cancelled"
    assert (lease(mk, a)["status"], lease(mk, b)["status"]) == ("rejected", "cancelled")
    assert accounts.balance(mk.state, mk.T.address) == bal
    assert lease(mk, a)["close_reason"] == "no_capacity"


def test_sealed_access_opens_only_for_the_tenant(mk):
    lid = open_active(mk)
    sealed = lease(mk, lid)["sealed_access"]
    assert sealing.open_access(mk.T.seed, sealed) == b"ssh tenant@10.1.2.3 -i key"
    with pytest.raises(sealing.SealingError) as exc:
        sealing.open_access(mk.P.seed, sealed)
    assert exc.value.code == "sealed_access_unreadable"
    with pytest.raises(sealing.SealingError):
        sealing.open_access(mk.T.seed, b"\x00" * 80)
    with pytest.raises(sealing.SealingError) as exc:
        sealing.open_access(mk.T.seed, "not bytes")
    assert exc.value.code == "bad_sealed_access"


def test_unchallenged_report_confirms_when_the_window_ends(mk):
    lid = open_active(mk, units=1, hours=5)
    mk.advance_hours(1)
    window = ok(mk.send(mk.P, "usage_report", {"lease": lid, "period": 0, "unit_hours": 1, "uptime_permille": 1000}))["window_end_ms"]
    mk.advance(window - mk.time_ms - 1)
    assert lease(mk, lid)["reports"][0]["status"] == "pending"
    mk.advance(1)
    assert lease(mk, lid)["reports"][0]["status"] == "confirmed"
    assert mk.send(mk.T, "usage_dispute", {"lease": lid, "period": 0, "reason": "late"}).code == "dispute_window_closed"


def test_provider_closes_early_then_reports_the_cut_period(mk):
    bal_t = accounts.balance(mk.state, mk.T.address)
    lid = open_active(mk, units=2, hours=10)
    mk.advance(90 * 60_000)   # 1.5 h in
    ok(mk.send(mk.P, "lease_close", {"lease": lid, "reason": "hardware_failure"}))
    out = lease(mk, lid)
    assert out["status"] == "closed" and out["close_reason"] == "hardware_failure"
    assert queries.get_listing(mk.state, out["listing"])["reserved"] == 0
    ok(mk.send(mk.P, "usage_report", {"lease": lid, "period": 0, "unit_hours": 2, "uptime_permille": 1000}))
    # period 1 is cut at the close time (~30 min): at most 2 units x 1 h
    assert mk.send(mk.P, "usage_report", {"lease": lid, "period": 1, "unit_hours": 3, "uptime_permille": 1000}).code == "usage_exceeds_lease"
    ok(mk.send(mk.P, "usage_report", {"lease": lid, "period": 1, "unit_hours": 1, "uptime_permille": 1000}))
    assert mk.send(mk.P, "usage_report", {"lease": lid, "period": 2, "unit_hours": 1, "uptime_permille": 1000}).code == "bad_period"
    ok(mk.send(mk.T, "usage_confirm", {"lease": lid, "period": 0}))
    assert lease(mk, lid)["status"] == "closed"
    ok(mk.send(mk.T, "usage_confirm", {"lease": lid, "period": 1}))   # last open report: final settlement
    out = lease(mk, lid)
    assert out["status"] == "settled"
    assert out["paid"] == 3 * PRICE and out["refunded"] == 17 * PRICE
    assert accounts.balance(mk.state, mk.T.address) == bal_t - 3 * PRICE


def test_unreported_periods_are_refunded_when_the_report_window_closes(mk):
    bal_t = accounts.balance(mk.state, mk.T.address)
    lid = open_active(mk, units=1, hours=2)
    mk.advance_hours(2)
    assert lease(mk, lid)["status"] == "ended"
    mk.advance(DAY_MS)
    out = lease(mk, lid)
    assert out["status"] == "settled" and out["paid"] == 0 and out["refunded"] == 2 * PRICE
    assert accounts.balance(mk.state, mk.T.address) == bal_t
    r = mk.send(mk.P, "usage_report", {"lease": lid, "period": 0, "unit_hours": 1, "uptime_permille": 1000})
    assert r.code == "lease_settled"


def test_open_dispute_holds_the_final_settlement_and_closes_late_reports(mk):
    lid = open_active(mk, units=1, hours=2)
    mk.advance_hours(1)
    ok(mk.send(mk.P, "usage_report", {"lease": lid, "period": 0, "unit_hours": 1, "uptime_permille": 500}))
    ok(mk.send(mk.T, "usage_dispute", {"lease": lid, "period": 0, "reason": "it was down all hour"}))
    mk.advance_hours(1)
    mk.advance(2 * DAY_MS)
    assert lease(mk, lid)["status"] == "ended"     # held open by the dispute
    r = mk.send(mk.P, "usage_report", {"lease": lid, "period": 1, "unit_hours": 1, "uptime_permille": 1000})
    assert r.code == "report_window_closed"
    ok(mk.send(mk.A4, "usage_arbitrate", {"lease": lid, "period": 0, "unit_hours": 1, "uptime_permille": 800}))
    out = lease(mk, lid)
    assert out["status"] == "settled"
    assert out["reports"][0]["confirmed_by"] == "arbiter" and out["reports"][0]["arbiter"] == mk.A4.address
    # 199 points missed x 10 = 1990 per-mille, capped at 500: half of 1 unit-hour is kept back
    assert (out["paid"], out["penalties"], out["refunded"]) == (PRICE // 2, PRICE // 2, PRICE + PRICE // 2)


def test_resolution_sent_by_the_provider_carries_the_tenant_signature(mk):
    lid = open_active(mk, units=1, hours=1)
    mk.advance_hours(1)
    ok(mk.send(mk.P, "usage_report", {"lease": lid, "period": 0, "unit_hours": 1, "uptime_permille": 1000}))
    ok(mk.send(mk.T, "usage_dispute", {"lease": lid, "period": 0, "reason": "slow disks"}))
    sig = mk.T.sign(resolution_bytes(mk.chain.chain_id, lid, 0, 1, 995))
    res = ok(mk.send(mk.P, "usage_resolve", {"lease": lid, "period": 0, "unit_hours": 1, "uptime_permille": 995,
                                             "signer": mk.T.public_key, "signature": sig}))
    assert res["penalty"] == PRICE * 40 // 1000
    assert lease(mk, lid)["status"] == "settled"


def test_settlement_records_are_never_rewritten(mk):
    lid = open_active(mk, units=1, hours=3)
    snapshots = {}
    for period in range(3):
        mk.advance_hours(1)
        ok(mk.send(mk.P, "usage_report", {"lease": lid, "period": period, "unit_hours": 1, "uptime_permille": 1000}))
        ok(mk.send(mk.T, "usage_confirm", {"lease": lid, "period": period}))
        if period < 2:
            ok(mk.send(mk.T, "lease_settle", {"lease": lid}))
        for key, raw in mk.state.iter_raw(b"mkt/s/"):
            assert snapshots.setdefault(key, raw) == raw
    assert len(snapshots) == 3 and lease(mk, lid)["status"] == "settled"


def test_listing_update_pause_resume_do_not_touch_running_leases(mk):
    lid = open_active(mk, units=2, hours=2)
    listing = lease(mk, lid)["listing"]
    ok(mk.send(mk.P, "listing_update", {"listing": listing, "price": 5 * PRICE, "units": 2}))
    ok(mk.send(mk.P, "listing_pause", {"listing": listing}))
    assert lease(mk, lid)["price"] == PRICE
    assert mk.send(mk.T, "lease_open", {"listing": listing, "units": 1, "hours": 1, "max_price": 5 * PRICE}).code == "listing_paused"
    ok(mk.send(mk.P, "listing_resume", {"listing": listing}))
    assert mk.send(mk.T, "lease_open", {"listing": listing, "units": 1, "hours": 1, "max_price": 5 * PRICE}).code == "insufficient_units"
    mk.advance_hours(2)   # the lease ends: its units come back
    ok(mk.send(mk.T, "lease_open", {"listing": listing, "units": 2, "hours": 1, "max_price": 5 * PRICE}))
    ok(mk.send(mk.P, "listing_withdraw", {"listing": listing}))
    assert queries.get_listing(mk.state, listing)["status"] == "withdrawn"


def test_required_attestations(mk):
    listing = ok(mk.send(mk.P, "listing_create", listing_payload()))["listing"]
    evidence = sha256(b"sev-snp report")
    ok(mk.send(mk.A4, "attest", {"subject_type": "org", "subject": "org1", "claim": "confidential:sev-snp",
                                 "evidence_digest": evidence, "expires_ms": mk.time_ms + 2 * HOUR_MS}))
    want = {"listing": listing, "units": 1, "hours": 1, "max_price": PRICE,
            "require_attested": ["confidential:sev-snp"], "attested_by": ["org4"]}
    lid = ok(mk.send(mk.T, "lease_open", want))["lease"]
    assert lease(mk, lid)["attestations"] == [1]
    mk.advance_hours(2)   # the attestation expires
    assert mk.send(mk.T, "lease_open", want).code == "attestation_missing"
    ok(mk.send(mk.A4, "attest", {"subject_type": "listing", "subject": listing, "claim": "confidential:sev-snp",
                                 "evidence_digest": evidence, "expires_ms": mk.time_ms + 10 * HOUR_MS}))
    ok(mk.send(mk.T, "lease_open", want))
    ok(mk.send(mk.A4, "attest_revoke", {"attestation": 2}))
    assert mk.send(mk.T, "lease_open", want).code == "attestation_missing"
    atts = queries.list_attestations(mk.state, "listing", listing, now_ms=mk.time_ms)
    assert [(a["id"], a["live"]) for a in atts] == [(2, False)]


def test_time_jump_over_many_buckets_runs_everything_in_order(mk):
    listing = ok(mk.send(mk.P, "listing_create", listing_payload(units=100)))["listing"]
    ids = [open_active(mk, units=1, hours=h, listing=listing) for h in (1, 5, 30, 200)]
    pending = ok(mk.send(mk.T, "lease_open", {"listing": listing, "units": 1, "hours": 1, "max_price": PRICE}))["lease"]
    mk.advance(40 * DAY_MS)   # one block, ~200 coarse buckets later
    assert [lease(mk, i)["status"] for i in ids] == ["settled"] * 4
    assert lease(mk, pending)["status"] == "expired"
    assert list(mk.state.iter_raw(b"mkt/due/")) == []
    assert mk.state.get(b"mkt/duen") is None


def test_blocks_without_market_work_write_no_market_state(mk):
    mk.send(mk.T, "transfer", {"to": mk.P.address, "amount": 5})
    assert not any(k.startswith(b"mkt/") for k in mk.last_result.writes)


def test_two_nodes_replaying_the_same_blocks_agree(mk):
    lid = open_active(mk, units=2, hours=2)
    mk.advance_hours(1)
    ok(mk.send(mk.P, "usage_report", {"lease": lid, "period": 0, "unit_hours": 2, "uptime_permille": 950}))
    mk.advance(DAY_MS)
    other = mk.net.chain()
    for h in range(1, mk.chain.height + 1):
        other.apply_certified(mk.chain.get_block(h), mk.chain.get_cert(h))
    assert other.head.state_root == mk.chain.head.state_root


class CountingStore:
    """Wraps a store and counts the due-index keys that prefix iteration hands out."""

    def __init__(self, inner):
        self.inner, self.due_keys_read = inner, 0

    def get(self, key):
        return self.inner.get(key)

    def iterate(self, prefix, *, reverse=False):
        for key, value in self.inner.iterate(prefix, reverse=reverse):
            if key.startswith(b"s/mkt/due/"):
                self.due_keys_read += 1
            yield key, value

    def write(self, puts, *, sync=True):
        self.inner.write(puts, sync=sync)

    def close(self):
        self.inner.close()


def test_the_hook_reads_only_due_items_not_the_whole_index():
    from ledger.store.memory import MemoryStore

    net = make_testnet()
    store = CountingStore(MemoryStore())
    m = MarketNet(net, chain=net.chain(store))
    P, T = net.operators["org1"], net.operators["org2"]
    ok(m.send(P, "listing_create", listing_payload(units=1000)))
    m.block([m.tx(T, "lease_open", {"listing": 1, "units": 1, "hours": 1, "max_price": PRICE}) for _ in range(300)])
    assert m.state.get(b"mkt/duen") == 300
    store.due_keys_read = 0
    for _ in range(5):
        m.advance(100)
    # 300 items scheduled, none due: each of the five heartbeat checks reads the earliest
    # item only, and no block is made
    assert store.due_keys_read == 5 and m.chain.height == 2
    m.advance(HOUR_MS)
    # all due: one heartbeat check by the proposer and one by validate_block, then each
    # item read once by build_block and once by validate_block
    assert store.due_keys_read == 5 + 2 + 2 * 300
    assert [lease(m, i)["status"] for i in (1, 300)] == ["expired", "expired"]


def test_lifecycle_on_leveldb(tmp_path):
    pytest.importorskip("plyvel")
    from ledger.store.leveldb import LevelDBStore

    net = make_testnet()
    with LevelDBStore(tmp_path / "db") as store:
        m = MarketNet(net, chain=net.chain(store))
        m.P, m.T = net.operators["org1"], net.operators["org2"]
        lid = open_active(m, units=1, hours=1)
        m.advance_hours(1)
        ok(m.send(m.P, "usage_report", {"lease": lid, "period": 0, "unit_hours": 1, "uptime_permille": 1000}))
        m.advance(DAY_MS)
        assert lease(m, lid)["status"] == "settled"
        assert check_invariants(m.state, m.chain.head.time_ms) == []
