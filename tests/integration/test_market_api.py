"""The market endpoints on a real single-validator node (LevelDB in a temp dir, the API on a
free port): listings filtered and paged, leases with reports and settlements, attestations,
the account's escrow, and a 400 / 404 with a clear code for every bad query or unknown id."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from pathlib import Path

import aiohttp
import pytest

from genesis.schema import save as save_genesis
from genesis.testnet import make_testnet
from ledger.keystore import write_key
from ledger.market.sealing import seal_access
from ledger.tx import make_tx
from node.app import Node
from node.config import init_home, load_config

NET = make_testnet(n_orgs=4, n_validators=1, chain_id="cxl-market-api")
CHAIN_ID = NET.doc["chain_id"]
OP1, OP2, OP3 = NET.operators["org1"], NET.operators["org2"], NET.operators["org3"]
AUD3 = NET.auditors["org3"]
DAY = 86_400_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def listing(region="eu-west", jurisdiction="EU", features=(), price=1_000_000, units=4, vcpu=4000, gpus=0):
    t = now_ms()
    return {"resources": {"vcpu_milli": vcpu, "memory_mib": 16384, "storage_gib": 100, "gpu_count": gpus,
                          "gpu_model": "H100" if gpus else ""},
            "units": units, "region": region, "jurisdiction": jurisdiction, "features": list(features),
            "price": price, "available_from_ms": t - 60_000, "available_until_ms": t + 30 * DAY,
            "sla": {"uptime_permille": 999, "penalty_permille": 10, "penalty_cap_permille": 500}}


class Client:
    def __init__(self, node: Node, session: aiohttp.ClientSession):
        self.url, self.s = node.api_url, session
        self.nonces: dict[str, int] = {}

    async def get(self, path: str, **params):
        async with self.s.get(self.url + path, params=params or None) as r:
            return r.status, await r.json()

    async def send(self, *txs) -> list[dict]:
        """Sign (signer, type, payload) triples with running nonces; commit; return the receipts."""
        signed = []
        for signer, kind, payload in txs:
            nonce = self.nonces.get(signer.address, 0)
            self.nonces[signer.address] = nonce + 1
            signed.append(make_tx(signer, CHAIN_ID, nonce, kind, payload))
        async with self.s.post(self.url + "/v1/txs", json={"txs": [base64.b64encode(s.raw).decode() for s in signed]}) as r:
            assert r.status == 200, await r.text()
        out = []
        for stx in signed:
            status, body = await self.get(f"/v1/txs/{stx.hash.hex()}", wait="10")
            assert status == 200 and body["status"] == "committed", body
            out.append(body["receipt"])
        return out

    async def ok(self, *txs) -> list[dict]:
        receipts = await self.send(*txs)
        assert all(r["code"] == "ok" for r in receipts), receipts
        return [r["result"] for r in receipts]


@pytest.fixture
async def client(tmp_path: Path):
    save_genesis(NET.doc, tmp_path / "genesis.json")
    write_key(tmp_path / "validator.json", NET.validators[0])
    home = tmp_path / "home"
    init_home(home, tmp_path / "genesis.json", tmp_path / "validator.json", api_port=1)
    node = Node(home, config=dataclasses.replace(load_config(home), api_port=0))
    await node.start()
    try:
        async with aiohttp.ClientSession() as s:
            yield Client(node, s)
    finally:
        await node.stop()


@pytest.fixture
async def market(client):
    """Listings 1-4 by org1 (2: us-east, 3: GPUs and pricey, 4: paused), 5 by org3; an org3
    auditor attests listing 1 sev-snp; org2 opens lease 1 on listing 1 (3 of its 4 units)."""
    for signer, terms in [
        (OP1, listing(features=["confidential:sev-snp", "encrypted-at-rest"])),
        (OP1, listing(region="us-east", jurisdiction="US", features=["encrypted-at-rest"], price=500_000)),
        (OP1, listing(features=["confidential:sev-snp"], price=9_000_000, vcpu=32000, gpus=8)),
        (OP1, listing(price=100)),
        (OP3, listing(region="ap-south", jurisdiction="IN", price=700_000, units=2)),
    ]:  # one block each: ids follow the order here (a block orders its txs its own way)
        await client.ok((signer, "listing_create", terms))
    await client.ok(
        (OP1, "listing_pause", {"listing": 4}),
        (AUD3, "attest", {"subject_type": "listing", "subject": 1, "claim": "confidential:sev-snp",
                          "evidence_digest": b"\x01" * 32, "expires_ms": now_ms() + DAY}),
    )
    (opened,) = await client.ok((OP2, "lease_open", {"listing": 1, "units": 3, "hours": 2, "max_price": 1_000_000,
                                                     "require_attested": ["confidential:sev-snp"]}))
    assert opened["escrowed"] == 6_000_000
    return client


def ids(body: dict) -> list[int]:
    return [item["id"] for item in body["items"]]


async def test_listings_filters(market):
    c = market
    status, body = await c.get("/v1/listings")
    assert status == 200 and ids(body) == [1, 2, 3, 5] and body["next_cursor"] is None  # 4 is paused
    first = body["items"][0]
    assert first["available_units"] == 1 and first["reserved"] == 3 and first["provider"] == "org1"
    assert first["features"] == ["confidential:sev-snp", "encrypted-at-rest"]
    cases = [
        ({"region": "eu-west"}, [1, 3]),
        ({"jurisdiction": "US"}, [2]),
        ({"feature": "encrypted-at-rest"}, [1, 2]),
        ({"feature": "confidential:sev-snp,encrypted-at-rest"}, [1]),
        ({"provider": "org3"}, [5]),
        ({"min_vcpu_milli": "8000"}, [3]),
        ({"min_gpu_count": "1", "gpu_model": "H100"}, [3]),
        ({"min_units": "2"}, [2, 3, 5]),
        ({"max_price": "700000"}, [2, 5]),
        ({"attested_by": "org3"}, [1]),
        ({"attested_by": "org3", "feature": "confidential:sev-snp"}, [1]),
        ({"attested_by": "org4"}, []),
        ({"status": "paused"}, [4]),
        ({"status": "any"}, [1, 2, 3, 4, 5]),
        ({"region": "eu-west", "max_price": "1000000"}, [1]),
    ]
    for params, expected in cases:
        status, body = await c.get("/v1/listings", **params)
        assert status == 200 and ids(body) == expected, (params, body)
    # repeated parameters work like comma-separated ones
    async with c.s.get(c.url + "/v1/listings?feature=confidential:sev-snp&feature=encrypted-at-rest") as r:
        assert ids(await r.json()) == [1]


async def test_listings_pagination(market):
    c = market
    seen, cursor = [], None
    while True:
        params = {"limit": "2", "status": "any"} | ({"cursor": str(cursor)} if cursor is not None else {})
        status, body = await c.get("/v1/listings", **params)
        assert status == 200 and len(body["items"]) <= 2
        seen += ids(body)
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [1, 2, 3, 4, 5]
    status, body = await c.get("/v1/listings", limit="200")
    assert status == 200 and len(body["items"]) == 4


@pytest.mark.parametrize("query, fragment", [
    ("limit=201", "limit"), ("limit=0", "limit"), ("cursor=-1", "cursor"), ("min_vcpu_milli=four", "min_vcpu_milli"),
    ("max_price=0", "max_price"), ("max_price=1.5", "max_price"), ("status=bogus", "status"),
    ("colour=red", "unknown query parameter"), ("region=", "region"), ("limit=1&limit=2", "once"),
    ("include_unavailable=maybe", "include_unavailable"), ("min_units=%C2%B2", "min_units"),
    ("limit=99999999999999999999999", "limit"),
])
async def test_bad_listing_query_is_400(client, query, fragment):
    async with client.s.get(client.url + "/v1/listings?" + query) as r:
        body = await r.json()
    assert r.status == 400 and body["error"]["code"] == "bad_query", body
    assert fragment in body["error"]["message"]


async def test_listing_lease_and_attestation_by_id(market):
    c = market
    status, item = await c.get("/v1/listings/1")
    assert status == 200 and item["id"] == 1 and item["available_units"] == 1
    assert [a["claim"] for a in item["attestations"]] == ["confidential:sev-snp"]
    assert item["attestations"][0]["evidence_digest"] == "01" * 32  # bytes as hex

    status, lease = await c.get("/v1/leases/1")
    assert status == 200 and lease["status"] == "pending" and lease["tenant"] == OP2.address
    assert lease["tenant_key"] == OP2.public_key.hex() and lease["escrow"] == 6_000_000
    assert lease["reports"] == [] and lease["settlement_records"] == [] and lease["attestations"] == [1]

    status, att = await c.get("/v1/attestations/1")
    assert status == 200 and att["issuer"] == "org3" and att["live"] is True

    for path, code in [("/v1/listings/99", "unknown_listing"), ("/v1/leases/99", "unknown_lease"),
                       ("/v1/attestations/99", "unknown_attestation")]:
        status, body = await c.get(path)
        assert status == 404 and body["error"]["code"] == code, (path, body)
        assert "99" in body["error"]["message"]
    for path, code in [("/v1/listings/abc", "bad_listing_id"), ("/v1/leases/0", "bad_lease_id"),
                       ("/v1/attestations/-3", "bad_attestation_id"),
                       ("/v1/listings/%C2%B2", "bad_listing_id"), ("/v1/leases/99999999999999999999", "bad_lease_id")]:
        status, body = await c.get(path)
        assert status == 400 and body["error"]["code"] == code, (path, body)


async def test_lease_lists_reports_settlements_and_escrow(market):
    c = market
    status, before = await c.get(f"/v1/accounts/{OP2.address}/market")
    assert status == 200 and before["escrow_as_tenant"] == 6_000_000 and before["open_leases"] == [1]
    assert before["balance"] == 10**12 - 6_000_000 and before["member"]["org"] == "org2"
    # by public key too
    assert (await c.get(f"/v1/accounts/{OP2.public_key.hex()}/market"))[1]["address"] == OP2.address
    # the plain account view shows the escrow too
    status, plain = await c.get(f"/v1/accounts/{OP2.address}")
    assert status == 200 and plain["balance"] == before["balance"]
    assert plain["escrow_as_tenant"] == 6_000_000 and plain["open_leases"] == [1]

    sealed = seal_access(OP2.public_key, b"ssh tenant@10.0.0.1")
    await c.ok((OP1, "lease_accept", {"lease": 1, "attestation_digest": b"\x02" * 32, "sealed_access": sealed}))
    await c.ok((OP2, "lease_close", {"lease": 1, "reason": "no_longer_needed"}))
    await c.ok((OP1, "usage_report", {"lease": 1, "period": 0, "unit_hours": 3, "uptime_permille": 990}))
    await c.ok((OP2, "usage_confirm", {"lease": 1, "period": 0}))

    status, lease = await c.get("/v1/leases/1")
    assert lease["status"] == "settled" and lease["escrow"] == 0
    assert lease["sealed_access"] == sealed.hex() and lease["attestation_digest"] == "02" * 32
    (rep,) = lease["reports"]
    assert rep["status"] == "confirmed" and rep["charge"] == 3_000_000 and rep["penalty"] == 270_000
    (rec,) = lease["settlement_records"]
    assert rec["kind"] == "final" and rec["provider_payout"] == 2_730_000 and rec["tenant_refund"] == 3_270_000
    assert isinstance(rec["tx"], str) and len(rec["tx"]) == 64  # the settling tx hash, as hex

    status, after = await c.get(f"/v1/accounts/{OP2.address}/market")
    assert after["escrow_as_tenant"] == 0 and after["open_leases"] == []
    assert after["balance"] == 10**12 - 2_730_000

    status, body = await c.get("/v1/leases", tenant=OP2.address)
    assert status == 200 and ids(body) == [1] and body["next_cursor"] is None
    assert ids((await c.get("/v1/leases", provider="org1"))[1]) == [1]
    assert ids((await c.get("/v1/leases", provider="org1", status="active"))[1]) == []
    assert ids((await c.get("/v1/leases", tenant=OP2.public_key.hex(), status="settled"))[1]) == [1]
    assert ids((await c.get("/v1/leases", tenant=OP3.address))[1]) == []
    for params in ({}, {"tenant": OP2.address, "provider": "org1"}, {"tenant": "nobody"},
                   {"provider": "org1", "status": "done"}, {"provider": "org1", "limit": "500"}):
        status, body = await c.get("/v1/leases", **params)
        assert status == 400 and body["error"]["code"] == "bad_query", (params, body)


async def test_attestations_by_subject(market):
    c = market
    await c.ok((AUD3, "attest", {"subject_type": "org", "subject": "org1", "claim": "jurisdiction:EU",
                                 "evidence_digest": b"\x03" * 32, "expires_ms": now_ms() + DAY}))
    await c.ok((AUD3, "attest_revoke", {"attestation": 2}))
    status, body = await c.get("/v1/attestations", subject_type="listing", subject="1")
    assert status == 200 and [(a["id"], a["claim"], a["live"]) for a in body["items"]] == [(1, "confidential:sev-snp", True)]
    status, body = await c.get("/v1/attestations", subject_type="org", subject="org1")
    assert [(a["id"], a["live"]) for a in body["items"]] == [(2, False)]
    assert (await c.get("/v1/attestations", subject_type="org", subject="org1", live="true"))[1]["items"] == []
    assert (await c.get("/v1/attestations", subject_type="listing", subject="77"))[1]["items"] == []
    for params in ({}, {"subject": "org1"}, {"subject_type": "org"}, {"subject_type": "planet", "subject": "x"},
                   {"subject_type": "listing", "subject": "one"}):
        status, body = await c.get("/v1/attestations", **params)
        assert status == 400 and body["error"]["code"] == "bad_query", (params, body)


async def test_openapi_lists_market_paths(client):
    status, doc = await client.get("/v1/openapi.json")
    assert status == 200
    for path in ("/v1/listings", "/v1/listings/{id}", "/v1/leases", "/v1/leases/{id}", "/v1/attestations",
                 "/v1/accounts/{address}/market"):
        assert path in doc["paths"], path
    assert "Lease" in doc["components"]["schemas"]
    written = json.loads((Path(__file__).resolve().parents[2] / "docs" / "openapi.json").read_text())
    assert set(doc["paths"]) <= set(written["paths"]), "regenerate: python -m node.market_api > docs/openapi.json"


async def test_listing_lease_and_attestation_prove_their_stored_values(market):
    from ledger.encoding import decode
    from ledger.lightclient import verify_state_proof
    from ledger.market.common import attestation_key, lease_key, listing_key

    keys = [v.public_key for v in NET.validators]
    for path, key, check in [
        ("/v1/listings/1", listing_key(1), lambda stored, doc: stored["units"] == doc["units"] == 4),
        ("/v1/leases/1", lease_key(1), lambda stored, doc: stored["escrow"] == doc["escrow"] == 6_000_000),
        ("/v1/attestations/1", attestation_key(1), lambda stored, doc: stored["claim"] == doc["claim"]),
    ]:
        status, doc = await market.get(path + "?prove=1")
        assert status == 200 and doc["proof"]["covers"], (path, doc)
        entries = verify_state_proof(doc["proof"], chain_id=NET.doc["chain_id"], validators=keys)
        assert check(decode(entries[key]), doc), path
