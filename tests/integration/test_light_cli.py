"""The CLI's light client against a real node behind a tampering proxy (issue 11 item 3).

A real node (its own event loop, real LevelDB, real HTTP API) serves a certified chain whose
validator set changed twice (audit.testchain: validator 4 added by block 6, validator 0
removed by block 16), with a listing and a lease on it. It runs as an observer: the
chain's validators are offline, so the chain stands still and every answer is stable. An
aiohttp proxy between the CLI and the node alters one thing at a time: a balance, a proof
sibling, the state root in the header, a certificate signature, the validator set of a
change, the list of changes. Through the honest path the CLI prints "verified at height H";
through each lie it exits 1 naming what failed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import threading
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner

from audit.testchain import GENESIS_TIME, build_test_chain
from cli.main import cli
from genesis.schema import save as save_genesis
from ledger.block import Certificate, Header
from ledger.encoding import decode, encode
from ledger.statetree import StateProof
from ledger.store.leveldb import LevelDBStore
from node.config import init_home
from nodethread import NodeThread

DAY = 86_400_000
CHAIN_ID = "cxl-light-cli"


def _listing_terms() -> dict:
    return {"resources": {"vcpu_milli": 4000, "memory_mib": 16384, "storage_gib": 100, "gpu_count": 0,
                          "gpu_model": ""},
            "units": 4, "region": "eu-west", "jurisdiction": "EU", "features": ["encrypted-at-rest"],
            "price": 1_000_000, "available_from_ms": GENESIS_TIME, "available_until_ms": GENESIS_TIME + 30 * DAY,
            "sla": {"uptime_permille": 999, "penalty_permille": 10, "penalty_cap_permille": 500}}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(node url, genesis path, tenant address, head height) for a node serving the built chain."""
    d = tmp_path_factory.mktemp("light")
    home = d / "home"
    chain_holder = {}

    def build(store):
        bc = build_test_chain(store, blocks=20, chain_id=CHAIN_ID)
        op1, op2 = bc.net.operators["org1"], bc.net.operators["org2"]
        bc.add_block([bc.tx(op1, "listing_create", _listing_terms())])
        bc.add_block([bc.tx(op2, "lease_open", {"listing": 1, "units": 1, "hours": 2, "max_price": 1_000_000})])
        bc.add_block([bc.tx(bc.net.auditors["org3"], "attest", {
            "subject_type": "listing", "subject": 1, "claim": "encrypted-at-rest", "evidence_digest": b"\x01" * 32,
            "expires_ms": GENESIS_TIME + 30 * DAY})])
        chain_holder["bc"] = bc
        return bc

    # the genesis of the chain build_test_chain makes (a dry build on memory gives its document)
    probe = build_test_chain(blocks=1, chain_id=CHAIN_ID)
    save_genesis(probe.net.doc, d / "genesis.json")
    init_home(home, d / "genesis.json", api_port=1)  # a fresh node key: an observer
    store = LevelDBStore(home / "data")
    try:
        bc = build(store)
        assert bc.chain.genesis_hash == probe.chain.genesis_hash
        height = bc.chain.height
    finally:
        store.close()
    node = NodeThread(home)
    try:
        yield {"url": node.url, "genesis": str(d / "genesis.json"), "tenant": bc.net.operators["org2"].address,
               "height": height}
    finally:
        node.stop()


# -- the proxy ------------------------------------------------------------------------------------

def _flip_hex(text: str, at: int = 0) -> str:
    raw = bytearray(bytes.fromhex(text))
    raw[at] ^= 0x01
    return raw.hex()


def _b64_header(proof: dict, **changes) -> None:
    h = Header.from_wire(decode(base64.b64decode(proof["header_raw"])))
    h = Header(**{**{f: getattr(h, f) for f in Header.__slots__}, **changes})
    proof["header_raw"] = base64.b64encode(h.encode()).decode()


def tamper(mode: str | None, path: str, doc: dict) -> dict:
    proof = doc.get("proof")
    if mode == "balance" and path.startswith("/v1/accounts/"):
        doc["balance"] += 1
    elif mode == "proven_balance" and proof:
        entry = proof["entries"][0]  # bal/<address>
        entry["value"] = encode(decode(bytes.fromhex(entry["value"])) + 1).hex()
    elif mode == "lease_escrow" and path.startswith("/v1/leases/"):
        doc["escrow"] -= 1
    elif mode == "claim" and path.startswith("/v1/attestations/"):
        doc["claim"] = "confidential:sev-snp"
    elif mode == "proposal_actions" and path.startswith("/v1/proposals/"):
        doc["actions"][0]["args"]["org"] = "org1"
    elif mode == "sibling" and proof:
        entry = proof["entries"][0]
        sp = StateProof.decode(bytes.fromhex(entry["proof"]))
        siblings = list(sp.siblings)
        siblings[0] = bytes.fromhex(_flip_hex(siblings[0].hex()))
        entry["proof"] = StateProof(tuple(siblings), sp.leaf).encode().hex()
    elif mode == "header_state_root" and proof:
        # a consistent lie: another root in the header and in the proof
        root = bytes.fromhex(_flip_hex(proof["state_root"]))
        _b64_header(proof, state_root=root)
        proof["state_root"] = root.hex()
    elif mode == "cert_signature" and proof:
        c = Certificate.from_wire(decode(base64.b64decode(proof["certificate_raw"])))
        key, sig = c.signatures[0]
        sig = bytes([sig[0] ^ 1]) + sig[1:]
        c = Certificate(c.height, c.view, c.block_hash, ((key, sig),) + c.signatures[1:])
        proof["certificate_raw"] = base64.b64encode(c.encode()).decode()
    elif mode == "vset_key" and path == "/v1/light/validator_changes" and doc["changes"]:
        doc["changes"][0]["validators"][0]["key"] = "ab" * 32
    elif mode == "vset_endpoint" and path == "/v1/light/validator_changes" and doc["changes"]:
        doc["changes"][0]["validators"][0]["api"] = "http://evil.example:1"
    elif mode == "vset_gap" and path == "/v1/light/validator_changes" and doc["changes"]:
        doc["changes"] = doc["changes"][1:]
    elif mode == "vset_none" and path == "/v1/light/validator_changes":
        doc["changes"] = []
    elif mode == "no_proof" and proof:
        del doc["proof"]
    return doc


class Proxy:
    """Forwards every request to `target`; JSON answers pass through `tamper(self.mode, …)`."""

    def __init__(self, target: str):
        self.target, self.mode, self.seen = target, None, []
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)

    async def _start(self) -> str:
        self.session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"

    async def _handle(self, request: web.Request) -> web.Response:
        self.seen.append(request.path)
        body = await request.read()
        async with self.session.request(request.method, self.target + request.path_qs, data=body or None,
                                        headers={"Content-Type": "application/json"} if body else None) as r:
            status, raw = r.status, await r.read()
        if status == 200 and raw.startswith(b"{"):
            raw = json.dumps(tamper(self.mode, request.path, json.loads(raw))).encode()
        return web.Response(body=raw, status=status, content_type="application/json")

    def close(self):
        async def stop():
            await self.session.close()
            await self.runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(scope="module")
def proxy(served):
    p = Proxy(served["url"])
    yield p
    p.close()


@pytest.fixture(autouse=True)
def honest(proxy):
    proxy.mode = None
    proxy.seen.clear()


def run(*args) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exc_info
    return r.exit_code, r.stdout, r.stderr


def ok(*args) -> str:
    code, out, err = run(*args)
    assert code == 0, out + err
    return out


# -- the honest path ------------------------------------------------------------------------------

def test_account_lease_and_listing_verify_through_the_honest_path(served, proxy):
    g, node, h = served["genesis"], proxy.url, served["height"]
    out = ok("account", "show", served["tenant"], "--node", node, "--genesis", g)
    assert f"verified at height {h} (block " in out and "balance" in out
    assert "/v1/light/validator_changes" in proxy.seen  # it followed the changes to get there
    out = ok("--genesis", g, "lease", "show", 1, "--node", node)
    assert f"verified at height {h}" in out and "not covered by the proof" in out and "reports" in out
    out = ok("listing", "show", 1, "--node", node, "--genesis", g)
    assert f"verified at height {h}" in out and "eu-west" in out
    doc = json.loads(ok("listing", "show", 1, "--node", node, "--genesis", g, "--json"))
    assert doc["verified"]["height"] == h and len(doc["verified"]["block_hash"]) == 64
    assert doc["units"] == 4 and "proof" not in doc


def test_attestation_proposal_org_and_params_verify_through_the_honest_path(served, proxy):
    g, node, h = served["genesis"], proxy.url, served["height"]
    out = ok("attest", "show", 1, "--node", node, "--genesis", g)
    assert "encrypted-at-rest" in out and f"verified at height {h}" in out and "live" in out.split("not covered")[1]
    out = ok("gov", "show", 1, "--node", node, "--genesis", g)  # the proposal that added validator 4
    assert "add_validator" in out and f"verified at height {h}" in out
    assert f"verified at height {h}" in ok("gov", "orgs", "org2", "--node", node, "--genesis", g)
    assert f"verified at height {h}" in ok("gov", "params", "--node", node, "--genesis", g)


def test_the_followed_sets_are_cached_and_reused(served, proxy, tmp_path, monkeypatch):
    monkeypatch.setenv("CXL_HOME", str(tmp_path / "cxlhome"))
    ok("account", "show", served["tenant"], "--node", proxy.url, "--genesis", served["genesis"])
    (cache,) = (tmp_path / "cxlhome" / "light").iterdir()
    assert [s["after"] for s in json.loads(cache.read_text())["sets"]] == [6, 16]
    # a node that now hides every change: the cached, verified sets still decide the head
    proxy.mode = "vset_none"
    out = ok("account", "show", served["tenant"], "--node", proxy.url, "--genesis", served["genesis"])
    assert "verified at height" in out
    status = json.loads(ok("light", "status", "--genesis", served["genesis"], "--json"))
    assert [s["decides_after"] for s in status["sets"]] == [0, 6, 16]


def test_env_and_remembered_genesis(served, proxy, tmp_path, monkeypatch):
    monkeypatch.setenv("CXL_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("CXL_GENESIS", served["genesis"])
    assert "verified at height" in ok("lease", "show", 1, "--node", proxy.url)
    monkeypatch.delenv("CXL_GENESIS")
    ok("light", "trust", served["genesis"])
    assert "verified at height" in ok("listing", "show", 1, "--node", proxy.url)


def test_without_a_genesis_the_answer_is_shown_with_a_warning(served, proxy):
    code, out, err = run("account", "show", served["tenant"], "--node", proxy.url)
    assert code == 0 and "balance" in out and "verified" not in out
    assert "not verified: pass --genesis FILE, set CXL_GENESIS" in err
    code, out, err = run("account", "show", served["tenant"], "--node", proxy.url, "--trust-node", "--json")
    assert code == 0 and "verified" not in json.loads(out) and "not verified (--trust-node)" in err


# -- the lies -------------------------------------------------------------------------------------

LIES = [
    # (proxy mode, command, LightClientError code, words of the sentence)
    ("balance", ("account", "show", "TENANT"), "answer", "'balance' the node shows is not the proven value"),
    ("proven_balance", ("account", "show", "TENANT"), "state_proof", "does not lead to the state root"),
    ("lease_escrow", ("lease", "show", 1), "answer", "'escrow' the node shows is not the proven value"),
    ("sibling", ("listing", "show", 1), "state_proof", "does not lead to the state root"),
    ("header_state_root", ("account", "show", "TENANT"), "certificate", "certificate is not for this header"),
    ("cert_signature", ("lease", "show", 1), "cert_signature", "bad signature"),
    ("claim", ("attest", "show", 1), "answer", "'claim' the node shows is not the proven value"),
    ("proposal_actions", ("gov", "show", 1), "answer", "'actions' the node shows is not the proven value"),
    ("vset_key", ("account", "show", "TENANT"), "vset_hash", "next_validators_hash"),
    ("vset_endpoint", ("listing", "show", 1), "vset_proof", "not the `validators` entry proven"),
    ("vset_gap", ("account", "show", "TENANT"), "vset_gap", "a validator-set change between them is missing"),
    ("vset_none", ("lease", "show", 1), "validators_hash", "follow the validator-set changes"),
    ("no_proof", ("account", "show", "TENANT"), "malformed", "the node sent no proof"),
]


@pytest.mark.parametrize("mode,command,code,words", LIES, ids=[m for m, *_ in LIES])
def test_a_lying_node_is_caught(served, proxy, tmp_path, monkeypatch, mode, command, code, words):
    monkeypatch.setenv("CXL_HOME", str(tmp_path / "cxlhome"))
    command = [served["tenant"] if c == "TENANT" else c for c in command]
    proxy.mode = mode
    exit_code, out, err = run(*command, "--node", proxy.url, "--genesis", served["genesis"])
    assert exit_code == 1, out + err
    assert f"verification failed [{code}]" in err and words in err, err
    assert "ask another node" in err and "verified at height" not in out
    # nothing unverified is cached
    cache = tmp_path / "cxlhome" / "light"
    if mode.startswith("vset"):
        assert not cache.exists() or all(len(json.loads(f.read_text())["sets"]) < 2 for f in cache.iterdir())
    # and the same command through the honest path verifies
    proxy.mode = None
    assert "verified at height" in ok(*command, "--node", proxy.url, "--genesis", served["genesis"])


def test_trust_node_accepts_the_lie_and_says_so(served, proxy):
    proxy.mode = "balance"
    code, out, err = run("account", "show", served["tenant"], "--node", proxy.url, "--trust-node",
                         "--genesis", served["genesis"])
    assert code == 0 and "not verified (--trust-node)" in err and "verified at height" not in out


def test_list_commands_say_they_are_not_verified(served, proxy):
    code, out, err = run("listing", "list", "--all", "--node", proxy.url, "--genesis", served["genesis"])
    assert code == 0 and "eu-west" in out and "listings are not verified" in err and "cxl listing show ID" in err


# -- wait-for-commit ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def validator(tmp_path_factory):
    """A live single-validator chain (the built chain above stands still), behind its own proxy."""
    from genesis.testnet import make_testnet
    from ledger.keystore import write_key
    from nodethread import start_single_validator

    d = tmp_path_factory.mktemp("live")
    net = make_testnet(n_orgs=4, n_validators=1, chain_id="cxl-light-live")
    write_key(d / "admin.json", net.admins["org1"], name="admin")
    node = start_single_validator(net, d)
    p = Proxy(node.url)
    try:
        yield {"proxy": p, "genesis": str(d / "genesis.json"), "key": str(d / "admin.json"),
               "to": net.operators["org2"].address}
    finally:
        p.close()
        node.stop()


def tamper_tx_proof(doc: dict) -> dict:
    doc["receipt_bytes"] = encode(["ok", "", {"forged": 1}]).hex()
    return doc


def test_tx_wait_verifies_the_commit_when_a_genesis_is_known(validator, monkeypatch):
    v = validator
    p = v["proxy"]
    p.mode = None
    args = ("tx", "transfer", "--key", v["key"], "--to", v["to"], "--amount", 5, "--node", p.url)
    out = ok(*args, "--genesis", v["genesis"])
    assert "committed in block" in out and "verified at height" in out
    record = json.loads(ok(*args, "--genesis", v["genesis"], "--json"))
    assert record["verified"]["height"] == record["height"] and record["verified"]["block_hash"] == record["block_hash"]
    shown = ok("tx", "show", record["hash"], "--node", p.url, "--genesis", v["genesis"])
    assert f"verified at height {record['height']}" in shown
    # without a genesis the wait works as before, silently unverified
    out = ok(*args)
    assert "committed in block" in out and "verified" not in out
    # a node that forges the receipt in the proof is caught
    monkeypatch.setattr(sys.modules[__name__], "tamper",
                        lambda mode, path, doc: tamper_tx_proof(doc) if path.endswith("/proof") else doc)
    code, out, err = run(*args, "--genesis", v["genesis"])
    assert code == 1 and "verification failed [tx_proof]" in err and "results_root" in err, out + err
    code, out, err = run("tx", "show", record["hash"], "--node", p.url, "--genesis", v["genesis"])
    assert code == 1 and "verification failed [tx_proof]" in err, out + err


# -- the endpoint ---------------------------------------------------------------------------------

def _get(url: str) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_validator_changes_endpoint_pages_and_refuses_bad_parameters(served):
    base = served["url"] + "/v1/light/validator_changes"
    status, doc = _get(base)
    assert status == 200 and [c["height"] for c in doc["changes"]] == [6, 16] and doc["more"] is False
    assert doc["head"] == served["height"] and [len(c["validators"]) for c in doc["changes"]] == [5, 4]
    status, first = _get(base + "?limit=1")
    assert [c["height"] for c in first["changes"]] == [6] and first["more"] is True
    status, rest = _get(base + "?from=6&limit=1")
    assert [c["height"] for c in rest["changes"]] == [16]
    assert _get(base + "?from=16")[1]["changes"] == []
    for query, code in [("limit=0", "bad_limit"), ("limit=1001", "bad_limit"), ("limit=x", "bad_limit"),
                        ("from=-1", "bad_from"), ("from=%D9%A1", "bad_from"), ("from=1&from=2", "bad_query"),
                        ("height=3", "bad_query")]:
        status, err = _get(f"{base}?{query}")
        assert status == 400 and err["error"]["code"] == code and err["error"]["message"], (query, err)
