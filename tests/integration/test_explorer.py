"""The explorer page end to end: a real single-validator node (real LevelDB, real HTTP) with
real marketplace and governance activity, the page opened in headless Chromium (Debian's
/usr/bin/chromium driven by Playwright), every view's rendered DOM checked against what the
public API says, and a screenshot of each view checked (a PNG of the viewport's size that is
not blank).

Skips, saying why, when Chromium or Playwright is missing (fails instead under CI=true); CI
installs both (.ci/run calls scripts/ensure_chromium, Playwright is in the `test` extra)."""

from __future__ import annotations

import base64
import json
import time
import urllib.request

import pytest

from explorer_browser import Page, browser  # noqa: F401  (browser: a fixture; skips without Chromium)
from genesis.testnet import make_testnet
from ledger.market.sealing import seal_access
from ledger.tx import make_tx
from nodethread import start_single_validator

NET = make_testnet(n_orgs=4, n_validators=1, chain_id="cxl-explorer")
CHAIN_ID = NET.doc["chain_id"]
OP1, OP2, OP3 = NET.operators["org1"], NET.operators["org2"], NET.operators["org3"]
AUD3 = NET.auditors["org3"]
A1, A2, A4 = NET.admins["org1"], NET.admins["org2"], NET.admins["org4"]
DAY = 86_400_000
# API strings an attacker controls; each must show as text and never run
HOSTILE_MEMO = '<img src=x onerror="window.__pwned=1">'
HOSTILE_REGION = "<img src=x onerror=window.__pwned=2>"
HOSTILE_FEATURE = "<script>window.__pwned=3</script>"
HOSTILE_CLAIM = '"><svg onload=window.__pwned=4>'


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def fmt(n: int) -> str:
    """Numbers as the page shows them (en-US grouping)."""
    return f"{n:,}"


class Api:
    """Blocking JSON client of the node's public API (the test's source of truth)."""

    def __init__(self, url: str):
        self.url = url

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=15) as r:
            return json.loads(r.read())

    def post(self, path: str, body):
        req = urllib.request.Request(self.url + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=15) as r:
            return json.loads(r.read())

    def send(self, signer, kind: str, payload: dict) -> dict:
        """Sign with the next nonce, submit, wait for the commit; the committed tx record."""
        nonce = self.get(f"/v1/accounts/{signer.address}")["pending_nonce"]
        stx = make_tx(signer, CHAIN_ID, nonce, kind, payload)
        self.post("/v1/txs", {"tx": base64.b64encode(stx.raw).decode()})
        rec = self.get(f"/v1/txs/{stx.hash.hex()}?wait=10")
        assert rec["status"] == "committed", rec
        assert rec["receipt"]["code"] == "ok", rec
        return rec


def terms(region="eu-west", jurisdiction="EU", features=(), price=1_000_000, units=4):
    t = now_ms()
    return {"resources": {"vcpu_milli": 4000, "memory_mib": 16384, "storage_gib": 100, "gpu_count": 0, "gpu_model": ""},
            "units": units, "region": region, "jurisdiction": jurisdiction, "features": list(features), "price": price,
            "available_from_ms": t - 60_000, "available_until_ms": t + 30 * DAY,
            "sla": {"uptime_permille": 999, "penalty_permille": 10, "penalty_cap_permille": 500}}


def make_activity(api: Api) -> dict:
    """Listings 1 (eu-west, sev-snp), 2 (us-east), 3 (hostile strings, org3); an attestation of
    listing 1; lease 1 on listing 1 accepted, closed, reported, confirmed: settled; a memo'd
    transfer; proposal 1 (mint) with two yes votes, still open."""
    txs = {}
    txs["listing1"] = api.send(OP1, "listing_create", terms(features=["confidential:sev-snp", "encrypted-at-rest"]))
    txs["listing2"] = api.send(OP1, "listing_create", terms(region="us-east", jurisdiction="US",
                                                            features=["encrypted-at-rest"], price=500_000))
    txs["listing3"] = api.send(OP3, "listing_create", terms(region=HOSTILE_REGION, features=[HOSTILE_FEATURE], units=2))
    txs["attest"] = api.send(AUD3, "attest", {"subject_type": "listing", "subject": 1, "claim": "confidential:sev-snp",
                                              "evidence_digest": b"\x01" * 32, "expires_ms": now_ms() + DAY})
    txs["attest_org"] = api.send(AUD3, "attest", {"subject_type": "org", "subject": "org1", "claim": HOSTILE_CLAIM,
                                                  "evidence_digest": b"\x02" * 32, "expires_ms": now_ms() + DAY})
    txs["open"] = api.send(OP2, "lease_open", {"listing": 1, "units": 3, "hours": 2, "max_price": 1_000_000,
                                               "require_attested": ["confidential:sev-snp"]})
    txs["accept"] = api.send(OP1, "lease_accept", {"lease": 1, "attestation_digest": b"\x03" * 32,
                                                   "sealed_access": seal_access(OP2.public_key, b"ssh tenant@host")})
    txs["close"] = api.send(OP2, "lease_close", {"lease": 1, "reason": "no_longer_needed"})
    txs["report"] = api.send(OP1, "usage_report", {"lease": 1, "period": 0, "unit_hours": 3, "uptime_permille": 990})
    txs["confirm"] = api.send(OP2, "usage_confirm", {"lease": 1, "period": 0})
    txs["transfer"] = api.send(OP1, "transfer", {"to": OP2.address, "amount": 1234, "memo": HOSTILE_MEMO})
    txs["propose"] = api.send(A1, "propose", {"action": "mint", "args": {"to": OP1.address, "amount": 5}})
    txs["vote"] = api.send(A2, "vote", {"proposal": 1, "approve": True})
    return txs


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    node = start_single_validator(NET, tmp_path_factory.mktemp("explorer-node"))
    try:
        api = Api(node.url)
        yield api, make_activity(api)
    finally:
        node.stop()


@pytest.fixture
def page(market, browser, tmp_path):
    api, _ = market
    p = Page(browser, api.url, tmp_path)
    yield p
    p.close()


# -- the views --------------------------------------------------------------------------------

def test_overview_shows_head_and_validators_live(market, page):
    api, _ = market
    status = api.get("/v1/status")
    head = api.get(f"/v1/blocks/{status['height']}")
    assert page.page.get_attribute("#view", "data-route") == "overview"
    assert page.field("status", "height") == fmt(status["height"])
    assert page.field("status", "head_hash") == status["head_hash"]
    assert page.field("status", "chain_id") == CHAIN_ID
    assert page.rows("#validators", "data-key") == [v["key"] for v in status["validators"]]
    (row,) = page.page.query_selector_all("#validators tbody tr")
    cells = row.inner_text()
    assert "org1" in cells and "primary" in cells and "this node" in cells
    assert f"signed #{status['height']}" in cells  # the head's certificate has its signature
    assert page.rows("#latest-blocks", "data-height")[0] == str(status["height"])
    assert head["hash"][:16] in page.text("#latest-blocks")
    page.shot("overview")

    # live: a new block shows up without reloading the page
    before = status["height"]
    api.send(OP1, "transfer", {"to": OP3.address, "amount": 1})
    after = api.get("/v1/status")["height"]
    assert after > before
    page.page.wait_for_function(
        "h => document.querySelector(\"#status tr[data-field='height'] td\").textContent === h", arg=fmt(after))
    assert page.rows("#latest-blocks", "data-height")[0] == str(after)


def test_blocks_and_a_block_with_its_transactions(market, page):
    api, txs = market
    head = api.get("/v1/status")["height"]
    page.open("#/blocks")
    shown = page.rows("#blocks", "data-height")
    assert shown == [str(h) for h in range(head, max(0, head - 20), -1)]
    height = txs["open"]["height"]
    block = api.get(f"/v1/blocks/{height}")
    page.open(f"#/blocks/{height}")
    assert page.text("h1") == f"Block {fmt(height)}"
    assert page.field("header", "hash") == block["hash"]
    assert page.field("header", "txs_root") == block["header"]["txs_root"]
    assert page.rows("#block-txs", "data-tx") == block["txs"]
    assert "lease_open" in page.text("#block-txs") and "ok" in page.text("#block-txs")
    assert len(page.page.query_selector_all("#certificate tbody tr")) == len(block["certificate"]["signatures"])
    page.shot("block")
    # the block's hash is a route too, and the parent link goes one down
    page.open(f"#/blocks/{block['hash']}")
    assert page.text("h1") == f"Block {fmt(height)}"
    page.page.click("text=← parent")
    page.wait_ready()
    assert page.text("h1") == f"Block {fmt(height - 1)}"
    page.page.click("text=child →")
    page.wait_ready()
    assert page.text("h1") == f"Block {fmt(height)}"
    page.open(f"#/blocks/{head}")
    assert page.page.query_selector("text=child →") is None and "the head" in page.text(".pager")


def test_transaction_with_receipt_and_verified_proof(market, page):
    api, txs = market
    rec = txs["confirm"]
    page.open(f"#/tx/{rec['hash']}")
    assert page.field("tx", "hash") == rec["hash"]
    assert page.field("tx", "type") == "usage_confirm"
    assert page.field("tx", "sender") == OP2.address
    assert page.field("tx", "block").startswith(fmt(rec["height"]))
    assert page.field("receipt", "code") == "ok"
    result = rec["receipt"]["result"]
    receipt_text = page.field("receipt", "result")
    assert set(result) >= {"charge", "penalty"}, result
    for key, v in result.items():  # every result field and its value (ids show as links "#1")
        assert f"{key}\t{'#' if key == 'lease' else ''}{fmt(v)}" in receipt_text, (key, receipt_text)
    # the browser checked the proof itself: tx hash, both audit paths, header hash
    checks = page.rows("#proof-checks", "data-check")
    assert checks == ["transaction hash", "included in block", "receipt in block", "header certified"]
    assert page.text("#proof-checks").count("verified") == 4 and "FAILED" not in page.text("#proof-checks")
    proof = api.get(f"/v1/txs/{rec['hash']}/proof")
    assert proof["header"]["txs_root"] in page.text("#proof-checks")
    page.shot("transaction")

    # the checks are real: a proof altered on its way to the browser fails the ones it breaks
    def tamper(route):
        body = route.fetch().json()
        body["header"]["txs_root"] = "00" * 32
        body["receipt_bytes"] = body["receipt_bytes"][:-2] + ("00" if body["receipt_bytes"][-2:] != "00" else "01")
        route.fulfill(json=body)

    page.page.route("**/v1/txs/*/proof", tamper)
    page.open("#/proposals")
    page.open(f"#/tx/{rec['hash']}")
    verdicts = page.page.eval_on_selector_all("#proof-checks tbody tr", "rs => rs.map(r => r.cells[1].innerText)")
    assert verdicts == ["verified", "FAILED", "FAILED", "verified"], verdicts
    page.page.unroute("**/v1/txs/*/proof")
    # an unknown hash is the API's error, shown
    page.page.evaluate("h => { location.hash = h; }", "#/tx/" + "ab" * 32)
    page.wait_ready()
    assert page.state() == "error" and "unknown_tx" in page.text("#view")


def test_account_balances_and_leases(market, page):
    api, _ = market
    acct = api.get(f"/v1/accounts/{OP2.address}")
    page.open(f"#/accounts/{OP2.address}")
    assert page.field("account", "address") == OP2.address
    assert page.field("account", "balance") == f"{fmt(acct['balance'])} µcr"
    assert page.field("account", "escrow") == f"{fmt(acct['escrow_as_tenant'])} µcr"
    assert page.field("account", "member") == "org2 · operator"
    assert page.rows("#leases", "data-lease") == ["1"]
    page.shot("account")


def test_listings_with_filters(market, page):
    api, _ = market
    page.open("#/listings")
    assert page.rows("#listings", "data-listing") == [str(x["id"]) for x in api.get("/v1/listings")["items"]]
    assert page.rows("#listings", "data-listing") == ["1", "2", "3"]
    page.shot("listings")
    # the filter form puts its query in the route, and the API answers it
    page.page.fill("#listing-filters input[name=region]", "us-east")
    page.page.click("#listing-filters button[type=submit]")
    page.page.wait_for_function("() => location.hash.includes('region=us-east')")
    page.wait_ready()
    assert page.rows("#listings", "data-listing") == ["2"]
    page.open("#/listings?feature=confidential:sev-snp&attested_by=org3")
    assert page.rows("#listings", "data-listing") == ["1"]
    assert page.page.input_value("#listing-filters input[name=attested_by]") == "org3"
    page.open("#/listings?max_price=600000")
    assert page.rows("#listings", "data-listing") == ["2"]
    # a bad filter is the API's 400, shown as such
    page.page.evaluate("h => { location.hash = h; }", "#/listings?max_price=0")
    page.wait_ready()
    assert page.state() == "error" and "bad_query" in page.text("#view")
    page.open("#/listings/1")
    listing = api.get("/v1/listings/1")
    assert page.field("listing", "units") == f"4 ({listing['reserved']} reserved, {listing['available_units']} free)"
    # live attestations about the listing (1) or its provider org1 (2)
    assert page.rows("#attestations", "data-attestation") == [str(a["id"]) for a in listing["attestations"]] == ["1", "2"]
    assert page.rows("#leases", "data-lease") == ["1"]


def test_lease_timeline_and_settlements(market, page):
    api, txs = market
    lease = api.get("/v1/leases/1")
    page.open("#/leases/1")
    assert "settled" in page.text("h1")
    assert page.field("lease", "total") == f"{fmt(lease['total'])} µcr"
    assert page.field("lease", "paid") == f"{fmt(lease['paid'])} µcr"
    assert page.field("lease", "refunded") == f"{fmt(lease['refunded'])} µcr"
    events = page.page.eval_on_selector_all("#timeline li strong", "xs => xs.map(x => x.textContent)")
    assert events[0] == "opened" and events[-1] == "settled", events
    (rec,) = lease["settlement_records"]
    assert events == ["opened", "started", "closed", "usage reported (period 0)", f"settlement #{rec['seq']} (final)",
                      "settled"], events
    assert page.rows("#settlements", "data-seq") == [str(rec["seq"])]
    row = page.text("#settlements tbody tr")
    assert fmt(rec["provider_payout"]) in row and fmt(rec["tenant_refund"]) in row
    assert rec["tx"] == txs["confirm"]["hash"]
    page.shot("lease")
    page.page.click(f"#settlements a[href='#/tx/{rec['tx']}']")
    page.wait_ready()
    assert page.field("tx", "hash") == rec["tx"]
    page.open("#/leases")
    assert page.rows("#leases", "data-lease") == ["1"]
    page.open("#/leases?provider=org1&status=active")
    assert page.text("#leases") == "no leases"


def test_attestations(market, page):
    page.open("#/attestations")
    assert page.rows("#attestations", "data-attestation") == ["2", "1"]
    assert "confidential:sev-snp" in page.text("#attestations")
    page.shot("attestations")
    page.open("#/attestations/1")
    assert page.field("attestation", "issuer") == "org3"
    assert page.field("attestation", "evidence_digest") == "01" * 32
    assert "live" in page.text("h1")


def test_proposals_with_votes(market, page):
    api, _ = market
    page.open("#/proposals")
    assert page.rows("#proposals", "data-proposal") == ["1"]
    page.open("#/proposals/1")
    p = api.get("/v1/proposals/1")
    votes = page.page.eval_on_selector_all("#votes tbody tr", "rs => rs.map(r => r.innerText.split('\\t'))")
    assert [(o.strip(), v.strip()) for o, v in votes] == [(v["org"], v["vote"]) for v in p["votes"]]
    assert [v["vote"] for v in p["votes"]] == ["yes", "yes", "none", "none"]
    assert page.field("proposal", "tally") == "2 yes · 0 no · 2 not voted"
    assert "mint" in page.text("ol.actions")
    page.shot("proposal")
    page.open("#/orgs/org1")
    assert OP1.address in page.text("#members")
    page.open("#/params")
    assert "gov_threshold_num" in page.text("#params")


def test_api_strings_render_as_text_never_markup(market, page):
    _, txs = market
    page.open(f"#/tx/{txs['transfer']['hash']}")
    assert HOSTILE_MEMO in page.text("#payload")
    assert page.page.query_selector("#view img") is None
    page.open("#/listings")
    assert HOSTILE_REGION in page.text("#listings") and HOSTILE_FEATURE in page.text("#listings")
    assert page.page.query_selector("#view img, #view script") is None
    page.open("#/attestations")
    assert HOSTILE_CLAIM in page.text("#attestations")
    assert page.page.query_selector("#view svg") is None
    page.open("#/listings/3")
    assert page.field("listing", "region") == HOSTILE_REGION
    assert page.page.evaluate("() => window.__pwned") is None
    # and were markup ever built by mistake, the node's CSP stops inline script in the browser
    page.page.evaluate("() => { const s = document.createElement('script');"
                       " s.textContent = 'window.__inline = 1'; document.body.append(s); }")
    assert page.page.evaluate("() => window.__inline") is None
    assert any("Content Security Policy" in e for e in page.errors), page.errors
    page.errors.clear()


def test_search_box_finds_heights_hashes_and_accounts(market, page):
    _, txs = market
    for query, selector, expected in [
        (str(txs["open"]["height"]), "h1", f"Block {fmt(txs['open']['height'])}"),
        (txs["transfer"]["hash"], "#tx tr[data-field='hash'] > td", txs["transfer"]["hash"]),
        (txs["open"]["block_hash"], "h1", f"Block {fmt(txs['open']['height'])}"),
        (OP1.address, "#account tr[data-field='address'] > td", OP1.address),
    ]:
        page.page.fill("#search-input", query)
        page.page.press("#search-input", "Enter")
        page.page.wait_for_function("() => document.getElementById('view').dataset.hash === location.hash"
                                    " && location.hash.length > 2 && document.getElementById('view').dataset.state === 'ready'"
                                    " && !location.hash.startsWith('#/proposals')")
        assert page.text(selector) == expected, query
        page.open("#/proposals")  # leave, so the next search is a new route
