"""Key files others can read (or write) are refused, like ssh does; the Argon2 cost a key
file asks for is bounded (a file saying opslimit 1000 used to cost seconds per open)."""

from __future__ import annotations

import json
import os
import stat

import nacl.pwhash
import pytest
from click.testing import CliRunner

from cli.main import cli
from genesis.schema import save as save_genesis
from genesis.testnet import make_testnet
from ledger import keystore
from ledger.crypto import Signer
from ledger.encoding import sha256
from ledger.errors import KeystoreError
from ledger.keystore import load_key, write_key
from node.config import init_home, load_node_key
from node.errors import ConfigError
from ledger.crypto import address_from_payload

SIGNER = Signer(sha256(b"keyfile-safety"))
A = nacl.pwhash.argon2id

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


@posix_only
@pytest.mark.parametrize("mode, encrypted", [
    (0o644, False), (0o640, False), (0o604, False), (0o666, True), (0o644, True), (0o660, True), (0o602, False),
])
def test_a_key_file_others_can_read_or_write_is_refused(tmp_path, mode, encrypted):
    path = tmp_path / "k.json"
    write_key(path, SIGNER, passphrase="pw" if encrypted else None)
    os.chmod(path, mode)
    with pytest.raises(KeystoreError) as exc:
        load_key(path, "pw")
    assert exc.value.code == "key_permissions"
    assert f"chmod 600 {path}" in exc.value.message and oct(mode)[2:] in exc.value.message
    os.chmod(path, 0o600)
    assert load_key(path, "pw").public_key == SIGNER.public_key
    os.chmod(path, 0o400)  # read-only for the owner is fine too
    assert load_key(path, "pw").public_key == SIGNER.public_key


@posix_only
def test_a_loose_key_is_refused_before_the_passphrase_is_tried(tmp_path):
    """A wrong passphrase must not be what the user hears about: the file is the problem."""
    path = tmp_path / "k.json"
    write_key(path, SIGNER, passphrase="pw")
    os.chmod(path, 0o666)
    with pytest.raises(KeystoreError) as exc:
        load_key(path, "wrong")
    assert exc.value.code == "key_permissions"


@posix_only
def test_the_node_refuses_a_world_readable_node_key(tmp_path):
    net = make_testnet(n_orgs=1, n_validators=1)
    save_genesis(net.doc, tmp_path / "g.json")
    write_key(tmp_path / "k.json", net.validators[0])
    nh = init_home(tmp_path / "home", tmp_path / "g.json", tmp_path / "k.json")
    assert load_node_key(nh.path).public_key == net.validators[0].public_key
    os.chmod(nh.key_file, 0o644)
    with pytest.raises(ConfigError) as exc:
        load_node_key(nh.path)
    assert exc.value.code == "key_permissions" and "node_key.json" in exc.value.message


@posix_only
def test_the_cli_refuses_to_sign_with_a_world_readable_key_and_says_how_to_fix_it(tmp_path):
    path = tmp_path / "k.json"
    write_key(path, SIGNER)
    os.chmod(path, 0o644)
    r = CliRunner().invoke(cli, ["tx", "transfer", "--key", str(path), "--to", address_from_payload(b"\xab" * 20), "--amount", "5",
                                 "--sign-only", "--chain-id", "c", "--nonce", "0"], catch_exceptions=False)
    assert r.exit_code == 1, r.output
    assert "UNPROTECTED" in r.stderr and f"chmod 600 {path}" in r.stderr and r.stdout == ""
    assert "Traceback" not in r.output


def _with_kdf(tmp_path, **fields) -> os.PathLike:
    path = tmp_path / "k.json"
    if path.exists():
        path.unlink()
    write_key(path, SIGNER, passphrase="pw")
    doc = json.loads(path.read_text())
    doc.update(fields)
    path.write_text(json.dumps(doc))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return path


@pytest.mark.parametrize("fields", [
    {"opslimit": 1000, "memlimit": A.MEMLIMIT_MIN},        # cheap per pass, 1000 passes: the reported case
    {"opslimit": keystore.MAX_OPSLIMIT + 1},
    {"memlimit": keystore.MAX_MEMLIMIT + 1},
    {"memlimit": 2**40},
    {"opslimit": 0},
    {"memlimit": A.MEMLIMIT_MIN - 1},
    {"opslimit": True},
    {"opslimit": "2"},
    {"opslimit": 2.0},
    {"kdf": "scrypt"},
    {"salt": "00" * 8},
    {"salt": " " + "00" * 15 + " "},
])
def test_unbounded_or_odd_kdf_parameters_are_refused_without_running_the_kdf(tmp_path, monkeypatch, fields):
    path = _with_kdf(tmp_path, **fields)
    calls = []
    monkeypatch.setattr(keystore, "_kdf", lambda *a: calls.append(a) or b"\0" * 32)
    with pytest.raises(KeystoreError) as exc:
        load_key(path, "pw")
    assert exc.value.code == "bad_kdf_params"
    assert calls == []


def test_the_kdf_bounds_admit_what_we_write_and_the_documented_maximum(tmp_path):
    assert keystore.MAX_OPSLIMIT >= keystore.OPSLIMIT and keystore.MAX_MEMLIMIT >= keystore.MEMLIMIT
    path = _with_kdf(tmp_path)
    assert load_key(path, "pw").public_key == SIGNER.public_key


@posix_only
def test_keys_show_and_list_warn_about_a_loose_key(tmp_path):
    path = tmp_path / "keys" / "loose.json"
    path.parent.mkdir()
    write_key(path, SIGNER, passphrase="pw")
    os.chmod(path, 0o644)
    r = CliRunner().invoke(cli, ["keys", "show", str(path), "--json"], catch_exceptions=False)
    assert r.exit_code == 0 and "UNPROTECTED KEY FILE" in json.loads(r.stdout)["warning"]
    r = CliRunner().invoke(cli, ["keys", "list", "--dir", str(path.parent), "--json"], catch_exceptions=False)
    assert "chmod 600" in json.loads(r.stdout)[0]["warning"]
    os.chmod(path, 0o600)
    r = CliRunner().invoke(cli, ["keys", "show", str(path), "--json"], catch_exceptions=False)
    assert "warning" not in json.loads(r.stdout)


@posix_only
def test_the_cli_says_the_file_is_unprotected_before_it_asks_for_a_passphrase(tmp_path, monkeypatch):
    from cli import keys as cli_keys

    path = tmp_path / "k.json"
    write_key(path, SIGNER, passphrase="pw")
    os.chmod(path, 0o644)
    monkeypatch.setattr(cli_keys, "read_passphrase", lambda *a, **k: pytest.fail("asked for a passphrase"))
    with pytest.raises(KeystoreError) as exc:
        cli_keys.load_signer(path)
    assert exc.value.code == "key_permissions"
