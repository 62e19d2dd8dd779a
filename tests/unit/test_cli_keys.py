"""`cxl keys …` and `load_signer`: encrypted and dev keys, passphrase sources, errors."""

import json
import stat

import pytest
from click.testing import CliRunner

from cli.keys import load_signer
from cli.main import cli
from ledger.errors import KeystoreError
from ledger.crypto import address_from_payload


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.delenv("CXL_PASSPHRASE", raising=False)
    monkeypatch.setenv("CXL_KEYS_DIR", str(tmp_path / "keys"))

    def invoke(*args, input=None, env=None):
        return CliRunner().invoke(cli, list(args), input=input, env=env, catch_exceptions=False)

    return invoke


def test_new_encrypted_key_prompts_twice_and_is_0600(run, tmp_path, monkeypatch):
    r = run("keys", "new", "alice", "--json", input="s3cret\ns3cret\n")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    path = tmp_path / "keys" / "alice.json"
    assert info["path"] == str(path) and info["encrypted"] is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert "seed" not in doc and doc["kdf"] == "argon2id"
    monkeypatch.setenv("CXL_PASSPHRASE", "s3cret")
    signer = load_signer("alice", None)  # by name in CXL_KEYS_DIR, passphrase from the environment
    assert signer.address == info["address"]


def test_new_rejects_mismatched_confirmation(run, tmp_path):
    r = run("keys", "new", "bob", input="one\ntwo\none\none\n")
    assert r.exit_code == 0  # click asks again after a mismatch
    assert "match" in r.output.lower()


def test_new_unencrypted_says_so(run, tmp_path):
    r = run("keys", "new", "dev", "--unencrypted")
    assert r.exit_code == 0
    assert "UNENCRYPTED" in r.stderr
    path = tmp_path / "keys" / "dev.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    show = run("keys", "show", str(path), "--json")
    info = json.loads(show.stdout)
    assert info["encrypted"] is False and "UNENCRYPTED" in info["warning"]
    assert load_signer(path).address == info["address"]


def test_new_refuses_to_overwrite(run):
    assert run("keys", "new", "dev", "--unencrypted").exit_code == 0
    r = run("keys", "new", "dev", "--unencrypted")
    assert r.exit_code == 1 and "exists" in r.stderr and "--force" in r.stderr


def test_bad_name_is_a_usage_error(run):
    r = run("keys", "new", "../evil", "--unencrypted")
    assert r.exit_code == 2


def test_passphrase_file_and_wrong_passphrase(run, tmp_path, monkeypatch):
    pf = tmp_path / "pass.txt"
    pf.write_text("correct horse\n")
    r = run("keys", "new", "carol", "--passphrase-file", str(pf))
    assert r.exit_code == 0, r.output
    path = tmp_path / "keys" / "carol.json"
    assert load_signer(path, str(pf)).address == json.loads(path.read_text())["address"]
    bad = tmp_path / "bad.txt"
    bad.write_text("wrong\n")
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        load_signer(path, str(bad))
    monkeypatch.setenv("CXL_PASSPHRASE", "correct horse")
    assert load_signer(path).address == json.loads(path.read_text())["address"]


def test_encrypted_key_without_passphrase_input_is_a_clean_error(run, tmp_path):
    pf = tmp_path / "pass.txt"
    pf.write_text("right\n")
    run("keys", "new", "erin", "--passphrase-file", str(pf))
    r = run("tx", "transfer", "--key", "erin", "--to", address_from_payload(bytes(20)), "--amount", "1",
            "--sign-only", "--nonce", "0", "--chain-id", "c", input="")
    assert r.exit_code == 1
    assert "--passphrase-file" in r.stderr and "CXL_PASSPHRASE" in r.stderr


def test_wrong_passphrase_in_a_command_is_a_clean_error(run, tmp_path):
    pf = tmp_path / "pass.txt"
    pf.write_text("right\n")
    run("keys", "new", "dave", "--passphrase-file", str(pf))
    bad = tmp_path / "bad.txt"
    bad.write_text("nope\n")
    r = run("tx", "transfer", "--key", "dave", "--passphrase-file", str(bad), "--to", address_from_payload(bytes(20)),
            "--amount", "1", "--sign-only", "--nonce", "0", "--chain-id", "c")
    assert r.exit_code == 1
    assert "wrong passphrase" in r.stderr and "Traceback" not in r.output


def test_list_and_show(run, tmp_path):
    run("keys", "new", "a", "--unencrypted")
    run("keys", "new", "b", "--unencrypted")
    (tmp_path / "keys" / "notakey.json").write_text("{}")
    r = run("keys", "list", "--json")
    names = [k["name"] for k in json.loads(r.stdout)]
    assert names == ["a", "b"]
    human = run("keys", "list")
    assert "a" in human.stdout and "ENCRYPTED" in human.stdout
    missing = run("keys", "show", "zzz")
    assert missing.exit_code == 1 and "cxl keys new" in missing.stderr
