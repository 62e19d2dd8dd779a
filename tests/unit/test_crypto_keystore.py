"""Ed25519 signing, addresses, and key files (Argon2id + SecretBox, mode 0600)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ledger import keystore
from ledger.crypto import Signer, address_of, is_address, verify
from ledger.errors import KeystoreError, SignatureError
from ledger.keystore import UNENCRYPTED_WARNING, is_encrypted, load_key, write_key

SEED = bytes(range(32))


def test_sign_and_verify():
    s = Signer(SEED)
    sig = s.sign(b"hello")
    assert len(sig) == 64 and len(s.public_key) == 32
    assert verify(s.public_key, b"hello", sig)
    assert not verify(s.public_key, b"hellp", sig)
    bad = bytes([sig[0] ^ 1]) + sig[1:]
    assert not verify(s.public_key, b"hello", bad)
    other = Signer(bytes(32))
    assert not verify(other.public_key, b"hello", sig)
    # malformed inputs are a False, never an exception
    assert not verify(s.public_key[:31], b"hello", sig)
    assert not verify(s.public_key, b"hello", sig[:63])
    assert not verify(b"\xff" * 32, b"hello", sig)


def test_signing_is_deterministic_from_seed():
    assert Signer(SEED).public_key == Signer(SEED).public_key
    assert Signer(SEED).sign(b"m") == Signer(SEED).sign(b"m")
    assert Signer(SEED).address != Signer(bytes(32)).address


def test_address_format():
    s = Signer(SEED)
    addr = s.address
    assert addr == address_of(s.public_key)
    assert addr.startswith("cx1") and len(addr) == 41
    assert all(c in "qpzry9x8gf2tvdw0s3jn54khce6mua7l" for c in addr[3:])  # the bech32 alphabet
    assert is_address(addr)
    assert not is_address(addr.upper())
    assert not is_address("cx1" + addr[3:].upper())
    assert not is_address(addr[:-1])
    assert not is_address("cy" + addr[2:])
    assert not is_address("cx" + "g" * 40)
    assert not is_address(None)  # type: ignore[arg-type]
    with pytest.raises(SignatureError):
        address_of(b"\x00" * 31)


def test_bad_seed_size():
    with pytest.raises(SignatureError):
        Signer(b"\x00" * 31)


def test_repr_hides_seed():
    s = Signer(SEED)
    assert SEED.hex() not in repr(s) and s.address in repr(s)


def test_encrypted_key_round_trip_and_mode(tmp_path):
    s = Signer.generate()
    path = tmp_path / "k.json"
    doc = write_key(path, s, name="alice", passphrase="correct horse")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert s.seed.hex() not in text
    assert doc["encrypted"] is True and doc["kdf"] == "argon2id" and doc["address"] == s.address
    assert is_encrypted(path)
    loaded = load_key(path, "correct horse")
    assert loaded.seed == s.seed and loaded.address == s.address


def test_wrong_passphrase(tmp_path):
    path = tmp_path / "k.json"
    write_key(path, Signer(SEED), passphrase="right")
    with pytest.raises(KeystoreError) as exc:
        load_key(path, "wrong")
    assert exc.value.code == "wrong_passphrase"
    with pytest.raises(KeystoreError) as exc:
        load_key(path)
    assert exc.value.code == "passphrase_needed"


def test_empty_passphrase_refused(tmp_path):
    with pytest.raises(KeystoreError) as exc:
        write_key(tmp_path / "k.json", Signer(SEED), passphrase="")
    assert exc.value.code == "empty_passphrase"
    assert not (tmp_path / "k.json").exists()


def test_unencrypted_key_carries_warning(tmp_path):
    path = tmp_path / "dev.json"
    write_key(path, Signer(SEED))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc["encrypted"] is False
    assert doc["warning"] == UNENCRYPTED_WARNING and "UNENCRYPTED" in doc["warning"]
    assert not is_encrypted(path)
    assert load_key(path).seed == SEED


def test_refuses_to_overwrite(tmp_path):
    path = tmp_path / "k.json"
    write_key(path, Signer(SEED))
    before = path.read_text()
    with pytest.raises(KeystoreError) as exc:
        write_key(path, Signer(bytes(32)))
    assert exc.value.code == "key_exists"
    assert path.read_text() == before
    write_key(path, Signer(bytes(32)), overwrite=True)
    assert load_key(path).seed == bytes(32)


def test_overwrite_never_exposes_the_key_under_a_loose_mode(tmp_path, monkeypatch):
    path = tmp_path / "k.json"
    path.write_text("{}")
    os.chmod(path, 0o644)
    modes = []
    real_dump = keystore.json.dump

    def spy(doc, fh, **kw):
        modes.append(stat.S_IMODE(os.fstat(fh.fileno()).st_mode))
        return real_dump(doc, fh, **kw)

    monkeypatch.setattr(keystore.json, "dump", spy)
    write_key(path, Signer(SEED), overwrite=True)
    assert modes == [0o600], "the seed was written while the file was readable by others"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_tampered_or_foreign_files(tmp_path):
    path = tmp_path / "k.json"
    write_key(path, Signer(SEED))
    doc = json.loads(path.read_text())
    doc["public_key"] = Signer(bytes(32)).public_key.hex()
    path.write_text(json.dumps(doc))
    with pytest.raises(KeystoreError) as exc:
        load_key(path)
    assert exc.value.code == "bad_key_file"

    path.write_text("not json")
    with pytest.raises(KeystoreError) as exc:
        load_key(path)
    assert exc.value.code == "bad_key_file"

    path.write_text(json.dumps({"kind": "other"}))
    with pytest.raises(KeystoreError) as exc:
        load_key(path)
    assert exc.value.code == "bad_key_file"

    with pytest.raises(KeystoreError) as exc:
        load_key(tmp_path / "missing.json")
    assert exc.value.code == "key_unreadable"
