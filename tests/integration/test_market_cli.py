"""The whole market flow through `cxl` (click's CliRunner) against a real single-validator
node running in this process (its own thread and event loop, real LevelDB, real HTTP).

A lease's usage can only be reported once its period is over; periods are an hour (at
least a minute) of block time, so the flow closes the lease first: period 0 then covers
acceptance to close, and its report and confirmation complete the final settlement."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli.main import cli
from genesis.testnet import make_testnet
from ledger.keystore import write_key
from nodethread import cxl, start_single_validator

NET = make_testnet(n_orgs=4, n_validators=1, chain_id="cxl-market-cli")
FUNDS = 10**12


@pytest.fixture
def net(tmp_path, monkeypatch):
    keys = {}
    for org in ("org1", "org2", "org3"):
        for role, signer in (("operator", NET.operators[org]), ("auditor", NET.auditors[org])):
            keys[f"{org}-{role}"] = str(tmp_path / f"{org}-{role}.json")
            write_key(keys[f"{org}-{role}"], signer, name=f"{org}-{role}")
    node = start_single_validator(NET, tmp_path)
    monkeypatch.setenv("CXL_NODE", node.url)
    monkeypatch.setenv("CXL_GENESIS", str(tmp_path / "genesis.json"))  # every read and commit verified
    try:
        yield keys
    finally:
        node.stop()


def result(*args) -> dict:
    """A transaction command with --json: its receipt's result."""
    record = json.loads(cxl(*args, "--json"))
    assert record["receipt"]["code"] == "ok", record
    return record["receipt"]["result"]


def stdout_of(*args) -> str:
    """What a command printed on stdout alone (exit 0): notes go to stderr."""
    r = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.stdout


def failed(code: str, *args) -> str:
    """A transaction command that must fail with `code` and exit 1, saying so."""
    out = cxl(*args, code=1)
    assert code in out, out
    return out


def test_market_flow_through_the_cli(net, tmp_path):
    k = net
    listing = result("listing", "create", "--key", k["org1-operator"], "--units", 4, "--vcpu", 4, "--memory", 16,
                     "--storage", 100, "--region", "eu-west", "--jurisdiction", "EU",
                     "--feature", "confidential:sev-snp", "--feature", "encrypted-at-rest", "--price", 1_000_000)
    lid = listing["listing"]
    table = cxl("listing", "list", "--region", "eu-west", "--feature", "confidential:sev-snp", "--min-vcpu", 2,
                "--max-price", 1_000_000)
    assert "eu-west" in table and "4 vCPU, 16 GiB RAM, 100 GiB disk" in table
    assert "no listings match" in cxl("listing", "list", "--max-price", 999)
    assert "no listings match" in cxl("listing", "list", "--attested-by", "org3")

    # a lease that needs an attestation nobody gave yet
    failed("attestation_missing", "lease", "open", lid, "--key", k["org2-operator"], "--hours", 3,
           "--require-attested", "confidential:sev-snp")
    evidence = tmp_path / "sev-report.bin"
    evidence.write_bytes(b"sev-snp attestation report")
    att = result("attest", "create", "--key", k["org3-auditor"], "--listing", lid, "--claim", "confidential:sev-snp",
                 "--evidence-file", evidence)
    assert "confidential:sev-snp" in cxl("attest", "list", "--listing", lid, "--live")
    assert f"{lid}" in cxl("listing", "list", "--attested-by", "org3", "--feature", "confidential:sev-snp")

    # bad inputs: the chain's code, exit 1
    failed("insufficient_units", "lease", "open", lid, "--key", k["org2-operator"], "--units", 5, "--hours", 3)
    failed("price_above_max", "lease", "open", lid, "--key", k["org2-operator"], "--hours", 3, "--max-price", 999_999)
    failed("unauthorized", "lease", "open", lid, "--key", k["org2-auditor"], "--hours", 3)
    failed("own_listing", "lease", "open", lid, "--key", k["org1-operator"], "--hours", 3)

    opened = result("lease", "open", lid, "--key", k["org2-operator"], "--units", 2, "--hours", 3,
                    "--max-price", 1_000_000, "--require-attested", "confidential:sev-snp", "--attested-by", "org3")
    lease = opened["lease"]
    assert opened["escrowed"] == 6_000_000
    acct = json.loads(stdout_of("lease", "account", k["org2-operator"], "--json"))  # stderr: "not verified"
    assert acct["escrow_as_tenant"] == 6_000_000 and acct["balance"] == FUNDS - 6_000_000

    failed("not_provider", "lease", "accept", lease, "--key", k["org3-operator"], "--access", "x",
           "--attestation-digest", "00" * 32)
    result("lease", "accept", lease, "--key", k["org1-operator"], "--access", "ssh tenant@10.1.2.3 password=hunter2",
           "--attestation-file", evidence)
    out = cxl("lease", "credentials", lease, "--key", k["org2-operator"])
    # the access details alone on stdout; the verification line (stderr) after them
    assert out.splitlines()[0] == "ssh tenant@10.1.2.3 password=hunter2" and "verified at height" in out
    doc = json.loads(cxl("lease", "credentials", lease, "--key", k["org2-operator"], "--json"))
    assert doc["access"] == "ssh tenant@10.1.2.3 password=hunter2" and doc["verified"]["height"] >= 1
    out = cxl("lease", "credentials", lease, "--key", k["org3-operator"], code=1)
    assert "cannot open the access details" in out and "use the tenant's key" in out
    assert "sealed_access_unreadable" in out

    failed("period_not_over", "lease", "report", lease, "--key", k["org1-operator"], "--unit-hours", 2,
           "--uptime", 990)
    result("lease", "close", lease, "--key", k["org2-operator"])
    failed("usage_exceeds_lease", "lease", "report", lease, "--key", k["org1-operator"], "--unit-hours", 3,
           "--uptime", 990)
    failed("not_provider", "lease", "report", lease, "--key", k["org2-operator"], "--unit-hours", 2, "--uptime", 990)
    result("lease", "report", lease, "--key", k["org1-operator"], "--unit-hours", 2, "--uptime", 990)
    failed("not_tenant", "lease", "confirm", lease, "--key", k["org1-operator"], "--period", 0)
    confirmed = result("lease", "confirm", lease, "--key", k["org2-operator"])
    assert confirmed == {"lease": lease, "period": 0, "charge": 2_000_000, "penalty": 180_000}

    shown = json.loads(cxl("lease", "show", lease, "--json"))
    assert shown["status"] == "settled" and shown["escrow"] == 0
    (rec,) = shown["settlement_records"]
    assert (rec["kind"], rec["penalty"], rec["provider_payout"], rec["tenant_refund"]) == (
        "final", 180_000, 1_820_000, 4_180_000)
    human = cxl("lease", "show", lease)
    assert "settled" in human and "usage reports:" in human and "1820000" in human
    assert "verified at height" in human and shown["verified"]["height"] >= 1  # CXL_GENESIS: checked
    tenant = json.loads(stdout_of("lease", "account", k["org2-operator"], "--json"))
    provider = json.loads(stdout_of("lease", "account", k["org1-operator"], "--json"))
    assert tenant["escrow_as_tenant"] == 0 and tenant["open_leases"] == []
    assert tenant["balance"] == FUNDS - 1_820_000 and provider["balance"] == FUNDS + 1_820_000
    assert str(lease) in cxl("lease", "list", "--tenant", k["org2-operator"], "--status", "settled")
    assert str(lease) in cxl("lease", "list", "--provider", "org1")
    failed("lease_settled", "lease", "close", lease, "--key", k["org2-operator"])

    result("attest", "revoke", att["attestation"], "--key", k["org3-auditor"])
    assert "no attestations" in cxl("attest", "list", "--listing", lid, "--live")


def test_dispute_resolved_with_the_counter_signature(net):
    k = net
    lid = result("listing", "create", "--key", k["org1-operator"], "--units", 2, "--vcpu", 1, "--memory", 2,
                 "--region", "eu-west", "--jurisdiction", "EU", "--price", 1_000_000,
                 "--penalty", 0)["listing"]
    lease = result("lease", "open", lid, "--key", k["org2-operator"], "--units", 1, "--hours", 2)["lease"]
    result("lease", "accept", lease, "--key", k["org1-operator"], "--access", "host-a", "--attestation-digest",
           "aa" * 32)
    result("lease", "close", lease, "--key", k["org1-operator"], "--reason", "maintenance")
    result("lease", "report", lease, "--key", k["org1-operator"], "--unit-hours", 1, "--uptime", 1000)
    result("lease", "dispute", lease, "--key", k["org2-operator"], "--reason", "the host never answered")
    # the tenant signs the agreed outcome; the provider sends it
    sig = json.loads(cxl("lease", "sign-resolution", lease, 0, "--unit-hours", 0, "--uptime", 0,
                         "--key", k["org2-operator"], "--json"))
    # other values than the tenant signed: refused before sending, naming that cause (not the signer)
    out = failed("bad_resolution_signature", "lease", "resolve", lease, 0, "--unit-hours", 1, "--uptime", 0,
                 "--key", k["org1-operator"], "--counter-signer", sig["signer"], "--counter-signature",
                 sig["signature"])
    assert "not sent" in out and "they signed different values" in out and "unit_hours=1" in out
    # the provider's own signature is the wrong counter-signer
    own = json.loads(cxl("lease", "sign-resolution", lease, 0, "--unit-hours", 0, "--uptime", 0,
                         "--key", k["org1-operator"], "--json"))
    out = failed("bad_resolution_signer", "lease", "resolve", lease, 0, "--unit-hours", 0, "--uptime", 0,
                 "--key", k["org1-operator"], "--counter-signer", own["signer"], "--counter-signature",
                 own["signature"])
    assert "is you" in out
    result("lease", "resolve", lease, 0, "--unit-hours", 0, "--uptime", 0, "--key", k["org1-operator"],
           "--counter-signer", sig["signer"], "--counter-signature", sig["signature"])
    shown = json.loads(cxl("lease", "show", lease, "--json"))
    assert shown["status"] == "settled" and shown["paid"] == 0 and shown["refunded"] == 2_000_000
    assert shown["reports"][0]["confirmed_by"] == "resolution"


def test_unknown_ids_and_listing_lifecycle(net):
    k = net
    assert "no listing 42" in cxl("listing", "show", 42, code=1)
    assert "no lease 42" in cxl("lease", "show", 42, code=1)
    assert "no lease 42" in cxl("lease", "credentials", 42, "--key", k["org2-operator"], code=1)
    lid = result("listing", "create", "--key", k["org1-operator"], "--units", 2, "--vcpu", 1, "--memory", 2,
                 "--region", "eu-west", "--jurisdiction", "EU", "--price", 10)["listing"]
    assert result("listing", "update", lid, "--key", k["org1-operator"], "--price", 20, "--vcpu", 2)["version"] == 2
    shown = json.loads(cxl("listing", "show", lid, "--json"))
    assert shown["price"] == 20 and shown["resources"]["vcpu_milli"] == 2000 and shown["resources"]["memory_mib"] == 2048
    failed("not_provider", "listing", "pause", lid, "--key", k["org2-operator"])
    result("listing", "pause", lid, "--key", k["org1-operator"])
    failed("listing_paused", "lease", "open", lid, "--key", k["org2-operator"], "--hours", 1)
    assert str(lid) in cxl("listing", "list", "--status", "paused")
    result("listing", "resume", lid, "--key", k["org1-operator"])
    result("listing", "withdraw", lid, "--key", k["org1-operator"])
    assert "withdrawn" in cxl("listing", "show", lid)
