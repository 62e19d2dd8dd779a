"""Every time/duration option of `cxl` takes ISO-8601 and relative forms (cli/timeparse.py),
`--expires-in` is a duration wherever it is offered, and tables print times as ISO-8601 UTC
while `--json` keeps the node's integer milliseconds."""

from __future__ import annotations

import base64
import json
import re

import pytest
from click.testing import CliRunner

from cli import market
from cli.main import cli
from cli.timeparse import now_ms
from ledger.crypto import Signer
from ledger.keystore import write_key
from ledger.tx import decode_tx
from ledger.crypto import address_from_payload

OFFLINE = ["--sign-only", "--nonce", "0", "--chain-id", "cxl-unit", "--json"]
NOW_ISO, NOW = "2026-12-01T10:00Z", 1_796_119_200_000
DAY = 86_400_000


@pytest.fixture
def key(tmp_path):
    path = tmp_path / "k.json"
    write_key(path, Signer(b"\x05" * 32), name="k")
    return str(path)


def run(*args, code=0):
    r = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == code, r.output
    return r


def payload(*args) -> dict:
    out = json.loads(run(*args, *OFFLINE).stdout)
    return decode_tx(base64.b64decode(out["tx"])).tx.payload


LISTING = ["listing", "create", "--units", 1, "--vcpu", 1, "--memory", 1, "--region", "r", "--jurisdiction", "EU",
           "--price", 1]


def test_listing_window_takes_iso_relative_and_epoch_ms(key):
    p = payload(*LISTING, "--key", key, "--available-from", NOW_ISO, "--available-until", "2026-12-31T10:00+00:00")
    assert (p["available_from_ms"], p["available_until_ms"]) == (NOW, NOW + 30 * DAY)
    p = payload(*LISTING, "--key", key, "--available-from", NOW, "--available-until", NOW + 1)
    assert (p["available_from_ms"], p["available_until_ms"]) == (NOW, NOW + 1)
    before = now_ms()
    p = payload(*LISTING, "--key", key, "--available-until", "2h")
    assert before + 2 * 3_600_000 <= p["available_until_ms"] <= now_ms() + 2 * 3_600_000
    r = run(*LISTING, "--key", key, "--available-from", "2026-12-01T10:00", *OFFLINE, code=2)
    assert "no time zone" in r.output and "--available-from" in r.output


def test_attest_expires_in_is_a_duration_and_bare_days_still_work(key):
    attest = ["attest", "create", "--key", key, "--org", "org1", "--claim", "c", "--evidence-digest", "11" * 32]
    before = now_ms()
    assert before + 2 * 3_600_000 <= payload(*attest, "--expires-in", "2h")["expires_ms"] <= now_ms() + 2 * 3_600_000
    assert before + 90 * DAY <= payload(*attest)["expires_ms"] <= now_ms() + 90 * DAY  # default 90d
    r = run(*attest, "--expires-in", 7, *OFFLINE)  # the old unit: days, with a warning
    assert "read as days" in r.stderr and "7d" in r.stderr
    exp = decode_tx(base64.b64decode(json.loads(r.stdout)["tx"])).tx.payload["expires_ms"]
    assert before + 7 * DAY <= exp <= now_ms() + 7 * DAY
    assert payload(*attest, "--expires", NOW_ISO)["expires_ms"] == NOW
    assert "must be between" in run(*attest, "--expires-in", "3651d", *OFFLINE, code=2).output


@pytest.mark.parametrize("group", [["gov", "propose", "mint", "to=" + address_from_payload(bytes(20)), "amount=1"],
                                   ["tx", "propose", "mint", "--arg", "to=" + address_from_payload(bytes(20)), "--arg", "amount=1"]])
def test_proposals_count_blocks_under_a_name_that_says_so(key, group):
    assert payload(*group, "--key", key, "--expires-in-blocks", 10)["expires_in"] == 10
    r = run(*group, "--key", key, "--expires-in", 12, *OFFLINE)
    assert "deprecated" in r.stderr and "--expires-in-blocks 12" in r.stderr
    assert decode_tx(base64.b64decode(json.loads(r.stdout)["tx"])).tx.payload["expires_in"] == 12
    assert run(*group, "--key", key, "--expires-in", 1, "--expires-in-blocks", 2, *OFFLINE, code=2)
    help_text = run(*group[:2], "--help").output
    assert "--expires-in-blocks" in help_text and "--expires-in " not in help_text


def test_genesis_time_takes_iso_and_the_old_ms_option(tmp_path):
    out = tmp_path / "g.json"
    r = run("genesis", "init", "--chain-id", "c", "--out", out, "--genesis-time", NOW_ISO, "--json")
    assert json.loads(r.stdout)["genesis_time_ms"] == NOW == json.loads(out.read_text())["genesis_time_ms"]
    run("genesis", "init", "--chain-id", "c", "--out", out, "--genesis-time-ms", 1000, "--force")
    assert json.loads(out.read_text())["genesis_time_ms"] == 1000
    assert "2026-12-01T10:00:00Z" in run("genesis", "init", "--chain-id", "c", "--out", out, "--force",
                                         "--genesis-time", NOW_ISO).output


LISTING_DOC = {"id": 1, "status": "active", "provider": "org1", "payee": "cx1", "units": 2, "available_units": 2,
               "resources": {"vcpu_milli": 1000, "memory_mib": 1024, "storage_gib": 0, "gpu_count": 0,
                             "gpu_model": ""},
               "price": 5, "region": "r", "jurisdiction": "EU", "features": [],
               "available_from_ms": NOW, "available_until_ms": NOW + DAY + 250,
               "sla": {"uptime_permille": 999, "penalty_permille": 10, "penalty_cap_permille": 500},
               "attestations": [{"id": 4, "claim": "c", "issuer": "org3", "expires_ms": NOW + 2 * DAY}]}


def test_tables_print_iso_utc_and_json_keeps_ms(monkeypatch):
    monkeypatch.setattr(market, "_get", lambda client, path, what, params=None: LISTING_DOC)
    text = run("listing", "show", 1).output
    assert "2026-12-01T10:00:00Z .. 2026-12-02T10:00:00.250Z" in text and "until 2026-12-03T10:00:00Z" in text
    assert str(NOW) not in text
    data = json.loads(run("listing", "show", 1, "--json").stdout)
    assert data["available_from_ms"] == NOW and data == LISTING_DOC  # JSON: what the node said, unchanged
    page = {"items": [{"id": 4, "claim": "c", "issuer": "org3", "subject_type": "org", "subject": "org1",
                       "expires_ms": NOW, "live": True, "evidence_digest": "ab" * 32}]}
    monkeypatch.setattr(market, "_get", lambda client, path, what, params=None: page)
    text = run("attest", "list", "--org", "org1").output
    assert "EXPIRES (UTC)" in text and "2026-12-01T10:00:00Z" in text


class _StubClient:
    def status(self):
        return {"chain_id": "c", "height": 3, "head_hash": "ab", "time_ms": NOW + 5}

    def get(self, path, params=None):
        return {"height": 3, "hash": "ab", "header": {"time_ms": NOW}, "certificate": None, "txs": []}

    def block(self, height):
        return self.get(f"/v1/blocks/{height}")


def test_status_and_block_show_print_iso_times(monkeypatch):
    from cli import node

    monkeypatch.setattr(node, "client_for", lambda url, timeout=None: _StubClient())
    assert re.search(r"^head time +2026-12-01T10:00:00.005Z$", run("status").output, re.M)
    assert json.loads(run("status", "--json").stdout)["time_ms"] == NOW + 5
    assert "2026-12-01T10:00:00Z" in run("block", "show", 3).output
