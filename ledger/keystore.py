"""Key files: Ed25519 seeds encrypted with Argon2id + SecretBox, written with mode 0600.

An encrypted key file (JSON)::

    {"kind": "cxl-key", "version": 1, "name": "...", "address": "cx…", "public_key": "<hex>",
     "encrypted": true, "kdf": "argon2id", "opslimit": N, "memlimit": N,
     "salt": "<hex>", "ciphertext": "<hex of SecretBox(nonce||box)>"}

A dev key (`--unencrypted`) has ``"encrypted": false``, ``"seed": "<hex>"`` and a
``"warning"`` saying it is unencrypted: fit for local networks only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from ledger.crypto import Signer
from ledger.errors import KeystoreError

UNENCRYPTED_WARNING = "UNENCRYPTED DEV KEY: anyone who can read this file can sign as this account"
OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE


def _kdf(passphrase: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    return nacl.pwhash.argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE, passphrase.encode(), salt, opslimit=opslimit, memlimit=memlimit
    )


def key_document(signer: Signer, *, name: str = "", passphrase: str | None = None) -> dict:
    doc = {
        "kind": "cxl-key",
        "version": 1,
        "name": name,
        "address": signer.address,
        "public_key": signer.public_key.hex(),
    }
    if passphrase is None:
        doc.update(encrypted=False, warning=UNENCRYPTED_WARNING, seed=signer.seed.hex())
        return doc
    if not passphrase:
        raise KeystoreError("empty passphrase; use --unencrypted for a dev key", "empty_passphrase")
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    box = nacl.secret.SecretBox(_kdf(passphrase, salt, OPSLIMIT, MEMLIMIT))
    doc.update(
        encrypted=True, kdf="argon2id", opslimit=OPSLIMIT, memlimit=MEMLIMIT,
        salt=salt.hex(), ciphertext=bytes(box.encrypt(signer.seed)).hex(),
    )
    return doc


def write_key(path: str | Path, signer: Signer, *, name: str = "", passphrase: str | None = None,
              overwrite: bool = False) -> dict:
    """Write a key file with mode 0600 (created that way: never world-readable, even briefly)."""
    path = Path(path)
    doc = key_document(signer, name=name, passphrase=passphrase)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KeystoreError(f"{path} exists; refusing to overwrite a key", "key_exists") from None
    # O_CREAT's mode only applies to a new file: tighten an overwritten one before the seed lands
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, 0o600)
    return doc


def read_key_document(path: str | Path) -> dict:
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise KeystoreError(f"cannot read key file {path}: {exc.strerror}", "key_unreadable") from exc
    except json.JSONDecodeError as exc:
        raise KeystoreError(f"{path} is not a cxl key file (not JSON)", "bad_key_file") from exc
    if not isinstance(doc, dict) or doc.get("kind") != "cxl-key":
        raise KeystoreError(f"{path} is not a cxl key file", "bad_key_file")
    return doc


def load_key(path: str | Path, passphrase: str | None = None) -> Signer:
    """Open a key file. Encrypted keys need the passphrase; a wrong one is a clear error."""
    doc = read_key_document(path)
    try:
        if not doc.get("encrypted"):
            signer = Signer(bytes.fromhex(doc["seed"]))
        else:
            if passphrase is None:
                raise KeystoreError(
                    f"{path} is encrypted: give the passphrase (prompt, --passphrase-file or CXL_PASSPHRASE)",
                    "passphrase_needed",
                )
            key = _kdf(passphrase, bytes.fromhex(doc["salt"]), int(doc["opslimit"]), int(doc["memlimit"]))
            try:
                seed = nacl.secret.SecretBox(key).decrypt(bytes.fromhex(doc["ciphertext"]))
            except nacl.exceptions.CryptoError:
                raise KeystoreError(f"wrong passphrase for {path}", "wrong_passphrase") from None
            signer = Signer(seed)
    except (KeyError, ValueError, TypeError) as exc:
        raise KeystoreError(f"{path} is damaged: {exc}", "bad_key_file") from exc
    if signer.public_key.hex() != doc.get("public_key"):
        raise KeystoreError(f"{path}: the key does not match its recorded public key", "bad_key_file")
    return signer


def is_encrypted(path: str | Path) -> bool:
    return bool(read_key_document(path).get("encrypted"))
