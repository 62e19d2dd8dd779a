"""`cxl listing|lease|attest`: options map to exactly the payload fields the chain expects.

Signed offline (``--sign-only --nonce 0 --chain-id …``): no node is needed, the printed
transaction says what would be sent. Reads of lease state are stubbed."""

from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner

from cli import market
from cli.main import cli
from ledger.crypto import Signer, verify
from ledger.keystore import write_key
from ledger.market.sealing import open_access
from ledger.market.usage import resolution_bytes
from ledger.tx import decode_tx

OFFLINE = ["--sign-only", "--nonce", "0", "--chain-id", "cxl-unit", "--json"]
TENANT = Signer(b"\x07" * 32)
PROVIDER = Signer(b"\x08" * 32)


@pytest.fixture
def keys(tmp_path):
    paths = {}
    for name, signer in (("tenant", TENANT), ("provider", PROVIDER)):
        paths[name] = str(tmp_path / f"{name}.json")
        write_key(paths[name], signer, name=name)
    return paths


def run(*args, ok=True):
    r = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert r.exit_code == 0, r.output
    return r


def signed(*args) -> tuple[str, dict]:
    """Run a transaction command offline; return (type, payload as decoded from the signed tx)."""
    out = json.loads(run(*args, *OFFLINE).output)
    import base64

    stx = decode_tx(base64.b64decode(out["tx"]))
    return stx.tx.type, stx.tx.payload


def test_every_market_command_has_help():
    for group in ("listing", "lease", "attest"):
        r = run(group, "--help")
        names = [line.split()[0] for line in r.output.split("Commands:")[1].splitlines() if line.strip()]
        assert names
        for name in names:
            sub = run(group, name, "--help")
            assert "Usage:" in sub.output and len(sub.output) > 100, (group, name)
    assert "no separate activation step" in run("lease", "activate", "--help").output


def test_listing_create_maps_human_units(keys):
    kind, p = signed("listing", "create", "--key", keys["provider"], "--units", 4, "--vcpu", "0.5", "--memory", "1.5",
                     "--storage", 100, "--gpus", 2, "--gpu-model", "H100", "--region", "eu-west",
                     "--jurisdiction", "EU", "--feature", "encrypted-at-rest", "--feature", "confidential:sev-snp",
                     "--feature", "encrypted-at-rest", "--price", 250000, "--available-from", 1000,
                     "--available-until", 2000, "--uptime", 995, "--penalty", 20, "--penalty-cap", 300)
    assert kind == "listing_create"
    assert p == {"resources": {"vcpu_milli": 500, "memory_mib": 1536, "storage_gib": 100, "gpu_count": 2,
                               "gpu_model": "H100"},
                 "units": 4, "region": "eu-west", "jurisdiction": "EU",
                 "features": ["confidential:sev-snp", "encrypted-at-rest"], "price": 250000,
                 "available_from_ms": 1000, "available_until_ms": 2000,
                 "sla": {"uptime_permille": 995, "penalty_permille": 20, "penalty_cap_permille": 300}}


def test_listing_create_defaults_and_bad_values(keys):
    _, p = signed("listing", "create", "--key", keys["provider"], "--units", 1, "--vcpu", 2, "--memory", 4,
                  "--region", "r", "--jurisdiction", "j", "--price", 5)
    assert p["resources"] == {"vcpu_milli": 2000, "memory_mib": 4096, "storage_gib": 0, "gpu_count": 0, "gpu_model": ""}
    assert p["features"] == [] and p["sla"] == {"uptime_permille": 999, "penalty_permille": 10, "penalty_cap_permille": 500}
    assert 29 * 86_400_000 < p["available_until_ms"] - p["available_from_ms"] < 31 * 86_400_000
    base = ["listing", "create", "--key", keys["provider"], "--units", 1, "--memory", 4, "--region", "r",
            "--jurisdiction", "j", "--price", 5]
    for extra, hint in ((["--vcpu", "0.0001"], "--vcpu"), (["--vcpu", "four"], "--vcpu"),
                        (["--vcpu", 1, "--gpus", 1], "--gpu-model")):
        r = run(*base, *extra, *OFFLINE, ok=False)
        assert r.exit_code == 2 and hint in r.output, r.output


def test_listing_update_sends_only_what_changed(keys, monkeypatch):
    _, p = signed("listing", "update", 3, "--key", keys["provider"], "--price", 7)
    assert p == {"listing": 3, "price": 7}
    current = {"resources": {"vcpu_milli": 1000, "memory_mib": 1024, "storage_gib": 10, "gpu_count": 0,
                             "gpu_model": ""}, "sla": {"uptime_permille": 999, "penalty_permille": 1,
                                                       "penalty_cap_permille": 2}}
    monkeypatch.setattr(market, "_get", lambda client, path, what, params=None: current)
    _, p = signed("listing", "update", 3, "--key", keys["provider"], "--vcpu", 8, "--uptime", 990)
    assert p == {"listing": 3, "resources": {**current["resources"], "vcpu_milli": 8000},
                 "sla": {**current["sla"], "uptime_permille": 990}}
    r = run("listing", "update", 3, "--key", keys["provider"], *OFFLINE, ok=False)
    assert r.exit_code == 2 and "say what to change" in r.output
    for cmd, kind in (("pause", "listing_pause"), ("resume", "listing_resume"), ("withdraw", "listing_withdraw")):
        assert signed("listing", cmd, 3, "--key", keys["provider"]) == (kind, {"listing": 3})


def test_lease_open_maps_guards(keys):
    kind, p = signed("lease", "open", 5, "--key", keys["tenant"], "--units", 2, "--hours", 3, "--max-price", 900,
                     "--require-attested", "confidential:sev-snp", "--require-attested", "jurisdiction:EU",
                     "--attested-by", "org3")
    assert kind == "lease_open"
    assert p == {"listing": 5, "units": 2, "hours": 3, "max_price": 900,
                 "require_attested": ["confidential:sev-snp", "jurisdiction:EU"], "attested_by": ["org3"]}


def test_lease_accept_seals_to_the_tenant(keys, monkeypatch, tmp_path):
    monkeypatch.setattr(market, "_lease", lambda client, lid: {"tenant_key": TENANT.public_key.hex()})
    report = tmp_path / "report.bin"
    report.write_bytes(b"attestation report")
    for cmd in ("accept", "activate"):
        kind, p = signed("lease", cmd, 4, "--key", keys["provider"], "--access", "ssh t@10.0.0.1",
                         "--attestation-file", report)
        assert kind == "lease_accept" and set(p) == {"lease", "attestation_digest", "sealed_access"}
        assert p["attestation_digest"] == hashlib.sha256(b"attestation report").digest()
        assert open_access(TENANT.seed, p["sealed_access"]) == b"ssh t@10.0.0.1"
    _, p = signed("lease", "accept", 4, "--key", keys["provider"], "--access", "x", "--attestation-digest", "ab" * 32)
    assert p["attestation_digest"] == b"\xab" * 32
    r = run("lease", "accept", 4, "--key", keys["provider"], "--access", "x", "--attestation-digest", "ab", *OFFLINE,
            ok=False)
    assert r.exit_code == 2 and "32 bytes" in r.output
    r = run("lease", "accept", 4, "--key", keys["provider"], "--attestation-digest", "ab" * 32, *OFFLINE, ok=False)
    assert r.exit_code == 2 and "--access" in r.output


def test_lease_usage_and_close_payloads(keys, monkeypatch):
    monkeypatch.setattr(market, "_lease", lambda client, lid: {
        "next_period": 2, "reports": [{"period": 0, "status": "confirmed"}, {"period": 1, "status": "pending"}]})
    assert signed("lease", "report", 4, "--key", keys["provider"], "--unit-hours", 3, "--uptime", 990) == (
        "usage_report", {"lease": 4, "period": 2, "unit_hours": 3, "uptime_permille": 990})
    assert signed("lease", "confirm", 4, "--key", keys["tenant"]) == ("usage_confirm", {"lease": 4, "period": 1})
    assert signed("lease", "dispute", 4, "--key", keys["tenant"], "--period", 0, "--reason", "down") == (
        "usage_dispute", {"lease": 4, "period": 0, "reason": "down"})
    assert signed("lease", "close", 4, "--key", keys["tenant"]) == (
        "lease_close", {"lease": 4, "reason": "no_longer_needed"})
    assert signed("lease", "reject", 4, "--key", keys["provider"], "--reason", "policy") == (
        "lease_reject", {"lease": 4, "reason": "policy"})
    assert signed("lease", "settle", 4, "--key", keys["tenant"]) == ("lease_settle", {"lease": 4})
    r = run("lease", "close", 4, "--key", keys["tenant"], "--reason", "bored", *OFFLINE, ok=False)
    assert r.exit_code == 2 and "no_longer_needed" in r.output


def test_sign_resolution_then_resolve(keys):
    out = json.loads(run("lease", "sign-resolution", 4, 1, "--unit-hours", 2, "--uptime", 1000, "--key",
                         keys["tenant"], "--chain-id", "cxl-unit", "--json").output)
    assert out["signer"] == TENANT.public_key.hex()
    assert verify(TENANT.public_key, resolution_bytes("cxl-unit", 4, 1, 2, 1000), bytes.fromhex(out["signature"]))
    kind, p = signed("lease", "resolve", 4, 1, "--unit-hours", 2, "--uptime", 1000, "--key", keys["provider"],
                     "--counter-signer", out["signer"], "--counter-signature", out["signature"])
    assert kind == "usage_resolve" and p == {"lease": 4, "period": 1, "unit_hours": 2, "uptime_permille": 1000,
                                             "signer": TENANT.public_key, "signature": bytes.fromhex(out["signature"])}
    r = run("lease", "resolve", 4, 1, "--unit-hours", 2, "--uptime", 1000, "--key", keys["provider"],
            "--counter-signer", "zz", "--counter-signature", out["signature"], *OFFLINE, ok=False)
    assert r.exit_code == 2 and "--counter-signer" in r.output


def test_attest_payloads(keys, tmp_path):
    evidence = tmp_path / "ev.txt"
    evidence.write_text("lab report")
    kind, p = signed("attest", "create", "--key", keys["provider"], "--listing", 3, "--claim", "confidential:sev-snp",
                     "--evidence-file", evidence, "--expires", 5_000)
    assert kind == "attest" and p == {"subject_type": "listing", "subject": 3, "claim": "confidential:sev-snp",
                                      "evidence_digest": hashlib.sha256(b"lab report").digest(), "expires_ms": 5_000}
    _, p = signed("attest", "create", "--key", keys["provider"], "--org", "org1", "--claim", "jurisdiction:EU",
                  "--evidence-digest", "11" * 32)
    assert p["subject_type"] == "org" and p["subject"] == "org1" and p["evidence_digest"] == b"\x11" * 32
    assert signed("attest", "revoke", 2, "--key", keys["provider"]) == ("attest_revoke", {"attestation": 2})
    r = run("attest", "create", "--key", keys["provider"], "--claim", "x", "--evidence-digest", "11" * 32, *OFFLINE,
            ok=False)
    assert r.exit_code == 2 and "--org ORG or --listing ID" in r.output


def test_read_commands_need_a_reachable_node():
    r = run("listing", "list", "--node", "http://127.0.0.1:9", ok=False)
    assert r.exit_code == 1 and "cannot reach a node" in r.output
    r = run("lease", "list", ok=False)
    assert r.exit_code == 2 and "--tenant" in r.output
