"""Governance endpoints and dry runs on a real single-validator node (LevelDB in a temp
dir, the API on a free port): proposals with votes by organisation, organisations,
parameters, and POST /v1/txs/simulate, which must never change state or the mempool."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path

import aiohttp
import pytest

from genesis.schema import save as save_genesis
from genesis.testnet import make_testnet
from ledger.crypto import Signer
from ledger.encoding import sha256
from ledger.keystore import write_key
from ledger.tx import make_tx
from node.app import Node
from node.config import init_home, load_config

NET = make_testnet(n_orgs=4, n_validators=1, chain_id="cxl-gov-api")
CHAIN_ID = NET.doc["chain_id"]
A1, A2, A3 = NET.admins["org1"], NET.admins["org2"], NET.admins["org3"]
OP1 = NET.operators["org1"]
NEW_ADMIN, NEW_OP = Signer(sha256(b"gov-api/admin")), Signer(sha256(b"gov-api/op"))


def b64(stx) -> str:
    return base64.b64encode(stx.raw).decode()


class Client:
    def __init__(self, node: Node, session: aiohttp.ClientSession):
        self.node, self.url, self.s = node, node.api_url, session

    async def get(self, path: str, **params):
        async with self.s.get(self.url + path, params=params or None) as r:
            return r.status, await r.json()

    async def post(self, path: str, body):
        async with self.s.post(self.url + path, json=body) as r:
            return r.status, await r.json()

    async def nonce(self, signer) -> int:
        return (await self.get(f"/v1/accounts/{signer.address}"))[1]["pending_nonce"]

    async def tx(self, signer, kind, payload):
        return make_tx(signer, CHAIN_ID, await self.nonce(signer), kind, payload)

    async def commit(self, signer, kind, payload) -> dict:
        stx = await self.tx(signer, kind, payload)
        status, body = await self.post("/v1/txs", {"tx": b64(stx)})
        assert status == 202, body
        status, body = await self.get(f"/v1/txs/{stx.hash.hex()}", wait="10")
        assert body["status"] == "committed", body
        return body["receipt"]


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


ONBOARD = [
    {"action": "add_org", "args": {"org": "acme", "name": "Acme", "admin": NEW_ADMIN.public_key.hex()}},
    {"action": "add_member", "args": {"org": "acme", "key": NEW_OP.public_key.hex(), "role": "operator"}},
]


async def test_proposals_show_votes_by_org_threshold_and_expiry(client):
    r = await client.commit(A1, "propose", {"actions": ONBOARD, "expires_in": 500})
    pid = r["result"]["proposal"]
    status, p = await client.get(f"/v1/proposals/{pid}")
    assert status == 200
    assert p["status"] == "open" and p["proposer"] == A1.address
    assert [a["action"] for a in p["actions"]] == ["add_org", "add_member"]
    assert p["actions"][0]["args"]["admin"] == NEW_ADMIN.public_key.hex()
    assert p["votes"] == [{"org": "org1", "vote": "yes"}, {"org": "org2", "vote": "none"},
                          {"org": "org3", "vote": "none"}, {"org": "org4", "vote": "none"}]
    assert p["tally"] == {"yes": 1, "no": 0, "not_voted": 3, "orgs": 4, "threshold": "2/3", "yes_needed": 3}
    assert p["expires_height"] == p["created_height"] + 500
    await client.commit(A2, "vote", {"proposal": pid, "approve": False})
    await client.commit(A3, "propose", {"action": "mint", "args": {"to": OP1.address, "amount": 5}})
    status, page = await client.get("/v1/proposals")
    assert [x["id"] for x in page["items"]] == [pid + 1, pid]  # newest first
    assert page["items"][1]["tally"]["no"] == 1
    status, page = await client.get("/v1/proposals", status="open", limit="1")
    assert [x["id"] for x in page["items"]] == [pid + 1] and page["next_cursor"] == pid + 1
    status, page = await client.get("/v1/proposals", status="open", cursor=str(page["next_cursor"]))
    assert [x["id"] for x in page["items"]] == [pid] and page["next_cursor"] is None
    # two more yes: executed, the new org is visible
    await client.commit(A3, "vote", {"proposal": pid, "approve": True})
    r = await client.commit(NET.admins["org4"], "vote", {"proposal": pid, "approve": True})
    assert r["result"]["status"] == "executed", r
    status, page = await client.get("/v1/proposals", status="executed")
    assert [x["id"] for x in page["items"]] == [pid]
    status, org = await client.get("/v1/orgs/acme")
    assert status == 200 and org["name"] == "Acme"
    assert {(m["address"], m["role"]) for m in org["members"]} == {(NEW_ADMIN.address, "admin"),
                                                                   (NEW_OP.address, "operator")}
    status, orgs = await client.get("/v1/orgs")
    assert [o["id"] for o in orgs["items"]] == ["acme", "org1", "org2", "org3", "org4"]
    assert orgs["items"][1] == {"id": "org1", "name": "Organisation 1", "validators": 1,
                                "members": {"admin": 1, "operator": 1, "auditor": 1}}


async def test_expired_status_is_derived(client):
    r = await client.commit(A1, "propose", {"action": "mint", "args": {"to": OP1.address, "amount": 1},
                                            "expires_in": 1})
    pid = r["result"]["proposal"]
    await client.commit(A2, "transfer", {"to": OP1.address, "amount": 1})  # one more block
    status, p = await client.get(f"/v1/proposals/{pid}")
    assert p["status"] == "expired"
    r = await client.commit(A2, "vote", {"proposal": pid, "approve": True})
    assert r["code"] == "proposal_expired", "the derived status agrees with the ledger"


async def test_params_and_errors(client):
    status, body = await client.get("/v1/params")
    assert status == 200
    assert body["params"]["max_block_txs"] == {"value": 2000, "default": 2000, "range": [1, 100_000]}
    for path, code, want in [("/v1/proposals/0", 400, "bad_proposal_id"), ("/v1/proposals/x", 400, "bad_proposal_id"),
                             ("/v1/proposals/99", 404, "unknown_proposal"), ("/v1/orgs/Nope!", 400, "bad_org_id"),
                             ("/v1/orgs/nope", 404, "unknown_org"), ("/v1/proposals?status=maybe", 400, "bad_query"),
                             ("/v1/proposals?limit=0", 400, "bad_query"), ("/v1/orgs?x=1", 400, "bad_query")]:
        status, body = await client.get(path)
        assert (status, body["error"]["code"]) == (code, want), (path, body)


async def _fingerprint(client) -> tuple:
    node = client.node
    return (node.chain.head, len(node.mempool), node.mempool.bytes, dict(node.chain.store.iterate(b"s/")))


async def test_simulate_returns_the_receipt_and_changes_nothing(client):
    before = await _fingerprint(client)
    ok = await client.tx(OP1, "transfer", {"to": A2.address, "amount": 7})
    status, r = await client.post("/v1/txs/simulate", {"tx": b64(ok)})
    assert status == 200, r
    assert (r["ok"], r["code"], r["stage"], r["result"]) == (True, "ok", "execution", {"to": A2.address, "amount": 7})
    assert r["hash"] == ok.hash.hex() and r["height"] == client.node.chain.height + 1
    over = await client.tx(OP1, "transfer", {"to": A2.address, "amount": 10**15})
    status, r = await client.post("/v1/txs/simulate", {"tx": b64(over)})
    assert (status, r["ok"], r["code"]) == (200, False, "insufficient_funds")
    vote = await client.tx(A1, "vote", {"proposal": 42, "approve": True})
    status, r = await client.post("/v1/txs/simulate", {"txs": [b64(vote), b64(ok)]})
    assert [x["code"] for x in r["results"]] == ["unknown_proposal", "ok"]
    wrong_key = make_tx(Signer(sha256(b"nobody")), CHAIN_ID, 0, "transfer", {"to": A2.address, "amount": 1})
    forged = bytearray(ok.raw)
    forged[-1] ^= 1
    status, r = await client.post("/v1/txs/simulate", {"txs": [b64(wrong_key), base64.b64encode(forged).decode()]})
    assert [(x["code"], x["stage"]) for x in r["results"]] == [("unknown_sender", "admission"),
                                                               ("bad_signature", "admission")]
    assert await _fingerprint(client) == before, "a dry run wrote to state or the mempool"
    # and the simulated transaction is still sendable, with the same nonce
    status, body = await client.post("/v1/txs", {"tx": b64(ok)})
    assert status == 202, body


async def test_simulate_follows_the_mempool_pending_nonce(client):
    node = client.node
    first = await client.tx(A1, "propose", {"action": "mint", "args": {"to": OP1.address, "amount": 1}})
    node.mempool.add(first)  # pending, not yet in a block (no notify: the runner does not propose it)
    second = make_tx(A1, CHAIN_ID, first.tx.nonce + 1, "vote", {"proposal": 1, "approve": True})
    status, r = await client.post("/v1/txs/simulate", {"tx": b64(second)})
    assert r["code"] == "already_voted", "the pending proposal ran first, with org1's yes"
    stale = make_tx(A1, CHAIN_ID, first.tx.nonce, "transfer", {"to": OP1.address, "amount": 1})
    status, r = await client.post("/v1/txs/simulate", {"tx": b64(stale)})
    assert r["code"] == "nonce_conflict"
    assert len(node.mempool) == 1


async def test_simulate_refuses_bad_bodies(client):
    for body, code in [({"tx": 1}, "bad_base64"), ({"tx": "!!"}, "bad_base64"), ({}, "bad_request"),
                       ({"tx": "", "txs": []}, "bad_request"), ({"txs": []}, "bad_request"),
                       ({"txs": ["AA=="] * 101}, "batch_too_large")]:
        status, r = await client.post("/v1/txs/simulate", body)
        assert r["error"]["code"] == code and status in (400, 413), (body, r)
    async with client.s.post(client.url + "/v1/txs/simulate", data=b"{not json") as resp:
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_json"
    async with client.s.post(client.url + "/v1/txs/simulate", data=b"x" * (client.node.config.max_body_bytes + 1)) as resp:
        assert resp.status == 413


async def test_openapi_has_the_governance_paths(client):
    status, doc = await client.get("/v1/openapi.json")
    for path in ("/v1/proposals", "/v1/proposals/{id}", "/v1/orgs", "/v1/orgs/{id}", "/v1/params",
                 "/v1/txs/simulate"):
        assert path in doc["paths"]
    written = json.loads((Path(__file__).resolve().parents[2] / "docs" / "openapi.json").read_text())
    from node.gov_api import OPENAPI_PATHS, OPENAPI_SCHEMAS
    for path, spec in OPENAPI_PATHS.items():
        assert written["paths"].get(path) == spec, f"regenerate: python -m node.gov_api > docs/openapi.json ({path})"
    for name, spec in OPENAPI_SCHEMAS.items():
        assert written["components"]["schemas"].get(name) == spec, name


async def test_simulate_is_bounded_while_consensus_goes_on(client, monkeypatch):
    import asyncio

    from node import gov_api

    probe = await client.tx(OP1, "transfer", {"to": A2.address, "amount": 1})
    monkeypatch.setattr(gov_api, "MAX_INFLIGHT", 0)
    status, r = await client.post("/v1/txs/simulate", {"tx": b64(probe)})
    assert (status, r["error"]["code"]) == (503, "simulate_busy")
    monkeypatch.setattr(gov_api, "MAX_INFLIGHT", 4)
    # a flood of 60 dry runs of 20 transactions each, with a real transaction sent in the middle
    batch = {"txs": [b64(make_tx(OP1, CHAIN_ID, n, "transfer", {"to": A2.address, "amount": 1})) for n in range(20)]}
    flood = [client.post("/v1/txs/simulate", batch) for _ in range(60)]
    receipt, *answers = await asyncio.gather(client.commit(A2, "transfer", {"to": OP1.address, "amount": 3}), *flood)
    assert receipt["code"] == "ok", "the transaction committed during the flood"
    statuses = {status for status, _ in answers}
    assert statuses <= {200, 503}, statuses
    served = [body for status, body in answers if status == 200]
    assert served and all([x["code"] for x in body["results"]] == ["ok"] * 20 for body in served)
    assert all(body["error"]["code"] == "simulate_busy" for status, body in answers if status == 503)
    assert len(client.node.mempool) == 0



async def test_simulate_refuses_deep_json_and_huge_integers_with_400(client):
    """POST /v1/txs/simulate reads its body like POST /v1/txs (issue 14 item 6): nesting
    1000 deep or a 5,000-digit integer is 400 bad_json, never a 500."""
    for body in (b"[" * 1000 + b"]" * 1000, b'{"tx": ' + b"9" * 5000 + b"}"):
        async with client.s.post(client.url + "/v1/txs/simulate", data=body) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["code"] == "bad_json"


# -- ?prove=1: state reads a client can check against the genesis file alone -----------------

def _checked(doc: dict) -> dict:
    from ledger.lightclient import verify_state_proof
    return verify_state_proof(doc["proof"], chain_id=CHAIN_ID, validators=[v.public_key for v in NET.validators])


async def test_state_reads_prove_their_values_against_a_certified_root(client):
    from ledger.accounts import bal_key, member_key, nonce_key, org_key
    from ledger.encoding import decode
    from ledger.governance import proposal_key

    r = await client.commit(A1, "propose", {"action": "mint", "args": {"to": OP1.address, "amount": 5}})
    pid = r["result"]["proposal"]
    status, acct = await client.get(f"/v1/accounts/{A1.address}", prove="1")
    assert status == 200 and acct["proof"]["height"] == acct["height"] >= 1
    entries = _checked(acct)
    assert decode(entries[bal_key(A1.address)]) == acct["balance"]
    assert decode(entries[nonce_key(A1.address)]) == acct["nonce"] == 1
    assert decode(entries[member_key(A1.address)])["org"] == acct["member"]["org"] == "org1"
    nobody = Signer(sha256(b"gov-api/nobody")).address  # absent entries are proven absent
    assert set(_checked((await client.get(f"/v1/accounts/{nobody}", prove="1"))[1]).values()) == {None}
    status, prop = await client.get(f"/v1/proposals/{pid}", prove="true")
    assert decode(_checked(prop)[proposal_key(pid)])["proposer"] == A1.address
    status, org = await client.get("/v1/orgs/org2", prove="1")
    assert decode(_checked(org)[org_key("org2")]) == {"id": "org2", "name": org["name"]}
    status, params = await client.get("/v1/params", prove="1")
    assert status == 200 and decode(_checked(params)[b"params"])["max_block_txs"] == params["params"]["max_block_txs"]["value"]
    status, plain = await client.get(f"/v1/accounts/{A1.address}")
    assert "proof" not in plain and "proof" not in (await client.get(f"/v1/accounts/{A1.address}", prove="0"))[1]


async def test_a_tampered_proof_answer_is_caught_with_the_failing_check(client):
    from ledger.lightclient import LightClientError

    await client.commit(A1, "transfer", {"to": OP1.address, "amount": 1})
    status, acct = await client.get(f"/v1/accounts/{A1.address}", prove="1")

    def fails(mutate, code):
        doc = json.loads(json.dumps(acct))
        mutate(doc["proof"])
        with pytest.raises(LightClientError) as exc:
            _checked(doc)
        assert exc.value.code == code, exc.value

    def flip(text: str) -> str:
        return text[:-1] + ("0" if text[-1] != "0" else "1")

    fails(lambda p: p["entries"][0].update(value=flip(p["entries"][0]["value"])), "state_proof")  # a lied balance
    fails(lambda p: p["entries"][0].update(proof=flip(p["entries"][0]["proof"])), "state_proof")
    fails(lambda p: p.update(state_root=flip(p["state_root"])), "state_root")
    cert = base64.b64decode(acct["proof"]["certificate_raw"])
    bad_sig = base64.b64encode(cert[:-5] + bytes([cert[-5] ^ 1]) + cert[-4:]).decode()
    fails(lambda p: p.update(certificate_raw=bad_sig), "cert_signature")
    fails(lambda p: p.update(header_raw="!!"), "malformed")
    with pytest.raises(LightClientError) as exc:  # a set the client does not trust
        from ledger.lightclient import verify_state_proof
        verify_state_proof(acct["proof"], chain_id=CHAIN_ID, validators=[NEW_OP.public_key])
    assert exc.value.code == "validators_hash"
    with pytest.raises(LightClientError) as exc:
        verify_state_proof(acct["proof"], chain_id="cxl-other", validators=[v.public_key for v in NET.validators])
    assert exc.value.code == "chain_id"
    status, body = await client.get(f"/v1/accounts/{A1.address}", prove="yes")
    assert (status, body["error"]["code"]) == (400, "bad_query")
