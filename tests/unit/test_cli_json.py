"""Every `cxl` command that prints data takes --json; the few that do not say why here."""

from __future__ import annotations

import json

import click
from click.testing import CliRunner

from cli import market
from cli.main import cli
from ledger.crypto import Signer
from ledger.keystore import write_key
from ledger.market.sealing import seal_access
from ledger.crypto import address_from_payload

# Commands without --json, each with the reason. Anything else that lacks it fails the test.
NO_JSON = {
    "node start": "runs a validator in the foreground until stopped; it prints a log, not a result",
    "localnet start": "supervises the local validators in the foreground until Ctrl-C; a log, not a result",
    "completion": "prints a shell script to source, not data",
}


def _leaves(cmd: click.Command, path: list[str]):
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from _leaves(sub, path + [name])
    else:
        yield " ".join(path), cmd


def test_every_data_command_has_json():
    leaves = dict(_leaves(cli, []))
    missing = [name for name, cmd in leaves.items()
               if name not in NO_JSON and not any("--json" in p.opts for p in cmd.params)]
    assert not missing, f"add --json (cli.common.json_option) to: {missing}, or justify it in NO_JSON"
    stale = [name for name in NO_JSON if name not in leaves]
    assert not stale, f"NO_JSON names commands that do not exist: {stale}"


def test_lease_credentials_json(tmp_path, monkeypatch):
    tenant = Signer(b"\x07" * 32)
    key = tmp_path / "t.json"
    write_key(key, tenant, name="t")
    sealed = seal_access(tenant.public_key, b"ssh admin@10.0.0.7")
    monkeypatch.setattr(market, "_get", lambda client, path, what, params=None: {
        "status": "active", "sealed_access": sealed.hex(), "tenant_key": tenant.public_key.hex(), "tenant": "cx"})
    r = CliRunner().invoke(cli, ["lease", "credentials", "3", "--key", str(key), "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"lease": 3, "access": "ssh admin@10.0.0.7"}


def test_tx_decode_json_is_the_same_json(tmp_path):
    key = tmp_path / "k.json"
    write_key(key, Signer(b"\x05" * 32), name="k")
    r = CliRunner().invoke(cli, ["tx", "transfer", "--key", str(key), "--to", address_from_payload(bytes(20)), "--amount", "1",
                                 "--sign-only", "--nonce", "0", "--chain-id", "c"], catch_exceptions=False)
    signed = tmp_path / "tx.b64"
    signed.write_text(r.stdout)
    plain = CliRunner().invoke(cli, ["tx", "decode", str(signed)])
    with_flag = CliRunner().invoke(cli, ["tx", "decode", str(signed), "--json"])
    assert plain.exit_code == with_flag.exit_code == 0
    assert json.loads(with_flag.stdout) == json.loads(plain.stdout) and json.loads(plain.stdout)["nonce"] == 0
