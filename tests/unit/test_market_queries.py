"""Read-only market queries: filters, pagination, lease detail, account view, due index."""

from __future__ import annotations

import pytest

from genesis.testnet import make_testnet
from ledger.encoding import sha256
from ledger.market import queries
from ledger.market.common import HOUR_MS
from ledger.market.harness import MarketNet, listing_payload


def ok(r):
    assert r.code == "ok", r
    return r.result


@pytest.fixture(scope="module")
def mk():
    net = make_testnet(params={"accept_window_ms": 10 * HOUR_MS})
    m = MarketNet(net)
    P1, P2, T = net.operators["org1"], net.operators["org2"], net.operators["org3"]
    gpu = {"vcpu_milli": 16000, "memory_mib": 131072, "storage_gib": 1000, "gpu_count": 2, "gpu_model": "h100"}
    txs = [
        m.tx(P1, "listing_create", listing_payload()),                                                  # 1
        m.tx(P1, "listing_create", listing_payload(region="us-east", jurisdiction="US", features=[])),  # 2
        m.tx(P2, "listing_create", listing_payload(resources=gpu, price=9_000_000, units=4)),           # 3
        m.tx(P2, "listing_create", listing_payload(price=500_000)),                                     # 4 paused
        m.tx(P2, "listing_pause", {"listing": 4}),
    ]
    for i in range(5, 13):                                                                             # 5-12
        txs.append(m.tx(P1, "listing_create", listing_payload(price=100 * i)))
    assert all(r.code == "ok" for r in m.block(txs))
    ok(m.send(net.auditors["org4"], "attest", {"subject_type": "listing", "subject": 3, "claim": "encrypted-at-rest",
                                               "evidence_digest": sha256(b"e"), "expires_ms": m.time_ms + 5 * HOUR_MS}))
    ok(m.send(net.auditors["org3"], "attest", {"subject_type": "org", "subject": "org1", "claim": "encrypted-at-rest",
                                               "evidence_digest": sha256(b"e"), "expires_ms": m.time_ms + 5 * HOUR_MS}))
    ok(m.send(T, "lease_open", {"listing": 3, "units": 3, "hours": 2, "max_price": 9_000_000}))
    ok(m.send(T, "lease_open", {"listing": 1, "units": 1, "hours": 2, "max_price": 1_000_000}))
    ok(m.send(P1, "lease_accept", {"lease": 2, "attestation_digest": sha256(b"d"), "sealed_access": b"s" * 64}))
    m.advance(HOUR_MS)
    ok(m.send(P1, "usage_report", {"lease": 2, "period": 0, "unit_hours": 1, "uptime_permille": 1000}))
    ok(m.send(T, "usage_confirm", {"lease": 2, "period": 0}))
    m.names = {"P1": P1, "P2": P2, "T": T}
    return m


def ids(page):
    return [x["id"] for x in page["items"]]


@pytest.mark.parametrize("filters,expected", [
    ({}, [1, 2, 3] + list(range(5, 13))),
    ({"region": "us-east"}, [2]),
    ({"jurisdiction": "EU", "max_price": 1000}, list(range(5, 11))),
    ({"feature": "confidential:sev-snp", "provider": "org2"}, [3]),
    ({"feature": ["confidential:sev-snp", "encrypted-at-rest"], "min_gpu_count": 1}, [3]),
    ({"gpu_model": "h100", "min_vcpu_milli": 16000, "min_memory_mib": 131072, "min_storage_gib": 1000}, [3]),
    ({"min_units": 2, "provider": "org2"}, []),                 # listing 3 has 1 of 4 units left
    ({"status": "paused"}, [4]),
    ({"status": None, "provider": "org2"}, [3, 4]),
    ({"attested_by": "org4"}, [3]),
    ({"attested_by": ["org3"], "feature": "encrypted-at-rest", "max_price": 1000}, list(range(5, 11))),
])
def test_listing_filters(mk, filters, expected):
    if "attested_by" in filters:
        filters = {**filters, "now_ms": mk.time_ms}
    assert ids(queries.list_listings(mk.state, limit=500, **filters)) == expected


def test_listing_filters_drop_expired_attestations(mk):
    assert ids(queries.list_listings(mk.state, attested_by="org4", now_ms=mk.time_ms + 6 * HOUR_MS)) == []


def test_listing_pagination_by_cursor(mk):
    seen, cursor = [], None
    while True:
        page = queries.list_listings(mk.state, cursor=cursor, limit=4)
        seen += ids(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(page["items"]) == 4
    assert seen == ids(queries.list_listings(mk.state, limit=500))


def test_get_listing_shows_available_units_and_attestations(mk):
    listing = queries.get_listing(mk.state, 3, now_ms=mk.time_ms)
    assert (listing["units"], listing["reserved"], listing["available_units"]) == (4, 3, 1)
    assert [a["claim"] for a in listing["attestations"]] == ["encrypted-at-rest"]
    assert queries.get_listing(mk.state, 99) is None


def test_get_lease_with_reports_and_settlements(mk):
    lease = queries.get_lease(mk.state, 2)
    assert lease["status"] == "active"
    assert [(r["period"], r["status"], r["confirmed_by"]) for r in lease["reports"]] == [(0, "confirmed", "tenant")]
    assert lease["settlement_records"] == []
    assert queries.get_lease(mk.state, 99) is None


def test_list_leases_by_tenant_and_provider(mk):
    T = mk.names["T"]
    assert ids(queries.list_leases(mk.state, tenant=T.address)) == [1, 2]
    assert ids(queries.list_leases(mk.state, provider="org2")) == [1]
    assert ids(queries.list_leases(mk.state, provider="org1", status="active")) == [2]
    page = queries.list_leases(mk.state, tenant=T.address, limit=1)
    assert ids(page) == [1] and page["next_cursor"] == 1
    assert ids(queries.list_leases(mk.state, tenant=T.address, cursor=1)) == [2]
    with pytest.raises(ValueError):
        queries.list_leases(mk.state)


def test_list_attestations_by_subject(mk):
    atts = queries.list_attestations(mk.state, "org", "org1", now_ms=mk.time_ms)
    assert [(a["issuer"], a["claim"], a["live"]) for a in atts] == [("org3", "encrypted-at-rest", True)]
    assert queries.list_attestations(mk.state, "org", "org1", now_ms=mk.time_ms + 6 * HOUR_MS,
                                     include_inactive=False) == []
    assert queries.get_attestation(mk.state, 1)["subject"] == 3


def test_account_view_shows_escrow_held_as_tenant(mk):
    view = queries.account_view(mk.state, mk.names["T"].address)
    assert view["escrow_as_tenant"] == 3 * 2 * 9_000_000 + 2 * 1_000_000
    assert view["open_leases"] == [1, 2]
    assert view["member"]["org"] == "org3"
    totals = queries.market_totals(mk.state)
    assert totals["lease_escrow"] == totals["escrow_total"] == view["escrow_as_tenant"]
