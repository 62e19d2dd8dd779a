"""Key files: Ed25519 seeds encrypted with Argon2id + SecretBox, written with mode 0600.

An encrypted key file (JSON)::

    {"kind": "cxl-key", "version": 1, "name": "...", "address": "cx…", "public_key": "<hex>",
     "encrypted": true, "kdf": "argon2id", "opslimit": N, "memlimit": N,
     "salt": "<hex>", "ciphertext": "<hex of SecretBox(nonce||box)>"}

A dev key (`--unencrypted`) has ``"encrypted": false``, ``"seed": "<hex>"`` and a
``"warning"`` saying it is unencrypted: fit for local networks only.

Opening a key for signing (`load_key`: the CLI's `--key` and the node's node_key.json)
refuses, like ssh, a file that its group or other users may read or write (any of the
mode bits 0o077), whether encrypted or not: the fix is ``chmod 600 FILE``. And it runs
Argon2id only with the cost parameters bounded by MAX_OPSLIMIT / MAX_MEMLIMIT, so a
file cannot make opening it take seconds or gigabytes.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from ledger.crypto import Signer, parse_hex
from ledger.errors import KeystoreError

UNENCRYPTED_WARNING = "UNENCRYPTED DEV KEY: anyone who can read this file can sign as this account"
OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
# Bounds on what a key file may ask for (we write OPSLIMIT / MEMLIMIT above). At most
# libsodium's "sensitive" pass count over its "moderate" memory: 256 MiB and about a
# second at worst (docs/operations.md, "Limits", has the measured numbers); a file
# asking for more (opslimit 1000 took seconds) is refused before the KDF runs.
MIN_OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_MIN
MAX_OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE
MIN_MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_MIN
MAX_MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_MODERATE
PRIVATE_MODE_MASK = 0o077  # group and other bits: none may be set on a key file


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
        data = path.read_bytes()
    except OSError as exc:
        raise KeystoreError(f"cannot read key file {path}: {exc.strerror}", "key_unreadable") from exc
    return _parse_document(path, data)


def _parse_document(path: Path, data: bytes) -> dict:
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KeystoreError(f"{path} is not a cxl key file (not JSON)", "bad_key_file") from exc
    if not isinstance(doc, dict) or doc.get("kind") != "cxl-key":
        raise KeystoreError(f"{path} is not a cxl key file", "bad_key_file")
    return doc


def check_private_mode(path: str | Path, mode: int) -> None:
    """Refuse a key file its group or other users may read or write (ssh's rule)."""
    if os.name == "posix" and mode & PRIVATE_MODE_MASK:
        raise KeystoreError(
            f"UNPROTECTED KEY FILE: {path} has mode {stat.S_IMODE(mode):o}, so other users can read or change "
            f"it; refusing to use it. Run `chmod 600 {path}` (and consider the key exposed if others could read it)",
            "key_permissions",
        )


def _read_private_document(path: Path) -> dict:
    """The key document, read from the same open file whose mode was checked (no race)."""
    try:
        with open(path, "rb") as fh:
            check_private_mode(path, os.fstat(fh.fileno()).st_mode)
            data = fh.read()
    except OSError as exc:
        raise KeystoreError(f"cannot read key file {path}: {exc.strerror}", "key_unreadable") from exc
    return _parse_document(path, data)


def _kdf_params(path: Path, doc: dict) -> tuple[bytes, int, int]:
    """Salt and Argon2id costs from a key file, refused unless within the bounds."""
    def bounded(name: str, lo: int, hi: int) -> int:
        value = doc.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise KeystoreError(f"{path}: {name} must be an integer in [{lo}, {hi}], not {value!r}; "
                                "this file was not written by cxl or was altered", "bad_kdf_params")
        return value

    if doc.get("kdf") != "argon2id":
        raise KeystoreError(f"{path}: kdf must be argon2id, not {doc.get('kdf')!r}", "bad_kdf_params")
    opslimit = bounded("opslimit", MIN_OPSLIMIT, MAX_OPSLIMIT)
    memlimit = bounded("memlimit", MIN_MEMLIMIT, MAX_MEMLIMIT)
    try:
        salt = parse_hex(doc.get("salt"), nacl.pwhash.argon2id.SALTBYTES)
    except ValueError as exc:
        raise KeystoreError(f"{path}: salt: {exc}", "bad_kdf_params") from None
    return salt, opslimit, memlimit


def load_key(path: str | Path, passphrase: str | None = None) -> Signer:
    """Open a key file. Encrypted keys need the passphrase; a wrong one is a clear error.
    A file others may read or write is refused (`key_permissions`) before anything else,
    and KDF parameters out of bounds (`bad_kdf_params`) before the KDF runs."""
    path = Path(path)
    doc = _read_private_document(path)
    try:
        if not doc.get("encrypted"):
            signer = Signer(parse_hex(doc["seed"], 32))
        else:
            salt, opslimit, memlimit = _kdf_params(path, doc)
            if passphrase is None:
                raise KeystoreError(
                    f"{path} is encrypted: give the passphrase (prompt, --passphrase-file or CXL_PASSPHRASE)",
                    "passphrase_needed",
                )
            key = _kdf(passphrase, salt, opslimit, memlimit)
            try:
                seed = nacl.secret.SecretBox(key).decrypt(parse_hex(doc["ciphertext"]))
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
