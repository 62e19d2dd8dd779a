"""`cxl keys …`: create, list and show key files, and `load_signer`, the one way commands open a key.

Key files live in ``~/.cxl/keys`` (or ``$CXL_KEYS_DIR``, or ``--dir``) as ``NAME.json``,
written by `ledger.keystore` with mode 0600 (Argon2id + SecretBox unless ``--unencrypted``).
A passphrase comes from ``--passphrase-file``, then ``$CXL_PASSPHRASE``, then a prompt.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import click

from cli.common import CliError, json_option, print_fields, print_json, print_table, read_secret_file
from ledger.crypto import Signer, address_of, address_problem, convert_old_address
from ledger.errors import KeystoreError
from ledger.keystore import UNENCRYPTED_WARNING, check_private_mode, load_key, read_key_document, write_key

KEYS_DIR_ENV = "CXL_KEYS_DIR"
PASSPHRASE_ENV = "CXL_PASSPHRASE"
KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def default_keys_dir() -> Path:
    return Path(os.environ.get(KEYS_DIR_ENV) or Path.home() / ".cxl" / "keys")


def resolve_key_path(name_or_path: str, keys_dir: str | Path | None = None) -> Path:
    """A key given as a path (anything that exists or has a '/' or '.json') or as a name in the keys dir."""
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    if "/" not in name_or_path and not name_or_path.endswith(".json"):
        candidate = Path(keys_dir or default_keys_dir()) / f"{name_or_path}.json"
        if candidate.is_file():
            return candidate
        raise CliError(
            f"no key named {name_or_path!r} in {candidate.parent} (and no file {name_or_path}); "
            "create one with `cxl keys new NAME` or give the key file's path"
        )
    raise CliError(f"key file {name_or_path} does not exist")


def address_or_key(value: str, opt: str | None = None) -> str:
    """An address typed on the command line, checked before anything is signed (a typo fails
    the checksum), or the address of a key given by name or path."""
    problem = address_problem(value)
    if problem is None:
        return value
    if problem[0] == "old_address_form" or value.startswith("cx1"):
        hint = " (`cxl keys convert-address` shows the new form)" if problem[0] == "old_address_form" else ""
        raise click.BadParameter(problem[1] + hint, param_hint=opt)
    try:
        path = resolve_key_path(value)
    except CliError:
        raise click.BadParameter(f"{value!r} is neither an address ({problem[1]}) nor a key name or key file",
                                 param_hint=opt) from None
    return key_summary(path)["address"]


def read_passphrase(passphrase_file: str | None, *, prompt: str, confirm: bool = False) -> str:
    """From `passphrase_file` (its first line), else $CXL_PASSPHRASE, else a hidden prompt."""
    if passphrase_file:
        return read_secret_file(passphrase_file)
    env = os.environ.get(PASSPHRASE_ENV)
    if env is not None:
        return env
    try:
        return click.prompt(prompt, hide_input=True, confirmation_prompt=confirm, err=True)
    except click.Abort:
        raise CliError(
            f"a passphrase is needed: type it at the prompt, or use --passphrase-file FILE or {PASSPHRASE_ENV}"
        ) from None


def load_signer(path: str | Path, passphrase_file: str | None = None, keys_dir: str | Path | None = None) -> Signer:
    """Open a key file (or a key by name in the keys dir) for signing.

    Unencrypted dev keys open directly; encrypted ones take their passphrase from
    `passphrase_file`, else ``$CXL_PASSPHRASE``, else a prompt. A wrong passphrase raises
    `KeystoreError("wrong passphrase for …")`, which the CLI prints and exits 1 on.
    """
    key_path = resolve_key_path(str(path), keys_dir)
    doc = read_key_document(key_path)
    check_private_mode(key_path, key_path.stat().st_mode)  # before asking for a passphrase
    if not doc.get("encrypted"):
        return load_key(key_path)
    passphrase = read_passphrase(passphrase_file, prompt=f"Passphrase for {key_path}")
    return load_key(key_path, passphrase)


def keyfile_public_key(path: str | Path) -> str:
    """The hex public key recorded in a key file (no passphrase needed)."""
    doc = read_key_document(path)
    key = doc.get("public_key")
    if not isinstance(key, str) or not re.fullmatch(r"[0-9a-f]{64}", key):
        raise KeystoreError(f"{path} has no valid public key", "bad_key_file")
    return key


def key_summary(path: Path) -> dict:
    doc = read_key_document(path)
    out = {
        "name": doc.get("name") or path.stem,
        "path": str(path),
        # derived from the public key, never taken from the file: a key file written
        # before checksummed addresses records the old form
        "address": address_of(bytes.fromhex(keyfile_public_key(path))),
        "public_key": doc.get("public_key"),
        "encrypted": bool(doc.get("encrypted")),
    }
    warnings = []
    try:  # listing a loose key is allowed (nothing secret is shown); signing with it is not
        check_private_mode(path, path.stat().st_mode)
    except KeystoreError as exc:
        warnings.append(exc.message)
    if not out["encrypted"]:
        warnings.append(doc.get("warning", UNENCRYPTED_WARNING))
    if warnings:
        out["warning"] = "; ".join(warnings)
    return out


dir_option = click.option(
    "--dir", "keys_dir", type=click.Path(file_okay=False), envvar=KEYS_DIR_ENV, show_envvar=True,
    help="Key directory [default: ~/.cxl/keys].",
)


@click.group("keys")
def keys_group() -> None:
    """Create and inspect Ed25519 key files (accounts and node keys)."""


@keys_group.command("new")
@click.argument("name")
@dir_option
@click.option("--unencrypted", is_flag=True, help="Store the seed in clear: dev/localnet keys only.")
@click.option("--passphrase-file", type=click.Path(dir_okay=False), help="Read the passphrase from this file's first line.")
@click.option("--force", is_flag=True, help="Overwrite an existing key file of that name.")
@json_option
def keys_new(name, keys_dir, unencrypted, passphrase_file, force, as_json):
    """Create a key NAME in the key directory (encrypted with a passphrase unless --unencrypted)."""
    if not KEY_NAME.match(name):
        raise click.BadParameter("use 1-64 letters, digits, '.', '_' or '-' (starting with a letter or digit)",
                                 param_hint="NAME")
    if unencrypted and passphrase_file:
        raise click.UsageError("--unencrypted and --passphrase-file contradict each other")
    directory = Path(keys_dir) if keys_dir else default_keys_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"{name}.json"
    if path.exists() and not force:
        raise CliError(f"{path} exists; choose another name or pass --force to replace it (the old key is lost)")
    passphrase = None
    if not unencrypted:
        passphrase = read_passphrase(passphrase_file, prompt="Passphrase for the new key", confirm=True)
        if not passphrase:
            raise CliError("empty passphrase; choose one, or use --unencrypted for a dev key")
    signer = Signer.generate()
    write_key(path, signer, name=name, passphrase=passphrase, overwrite=force)
    summary = key_summary(path)
    if as_json:
        print_json(summary)
        return
    click.echo(f"created {path}")
    print_fields([("address", summary["address"]), ("public key", summary["public_key"]),
                  ("encrypted", summary["encrypted"])])
    if unencrypted:
        click.echo(f"warning: {UNENCRYPTED_WARNING}", err=True)


@keys_group.command("list")
@dir_option
@json_option
def keys_list(keys_dir, as_json):
    """List the key files in the key directory."""
    directory = Path(keys_dir) if keys_dir else default_keys_dir()
    keys = []
    if directory.is_dir():
        for p in sorted(directory.glob("*.json")):
            try:
                keys.append(key_summary(p))
            except KeystoreError:
                continue  # not a key file: not ours to list
    if as_json:
        print_json(keys)
        return
    if not keys:
        click.echo(f"no keys in {directory}; create one with `cxl keys new NAME`")
        return
    print_table(["NAME", "ADDRESS", "ENCRYPTED", "PATH"],
                [[k["name"], k["address"], k["encrypted"], k["path"]] for k in keys])


@keys_group.command("show")
@click.argument("key")
@dir_option
@json_option
def keys_show(key, keys_dir, as_json):
    """Show a key's address and public key; KEY is a name in the key directory or a path."""
    summary = key_summary(resolve_key_path(key, keys_dir))
    if as_json:
        print_json(summary)
        return
    print_fields([("name", summary["name"]), ("path", summary["path"]), ("address", summary["address"]),
                  ("public key", summary["public_key"]), ("encrypted", summary["encrypted"]),
                  ("warning", summary.get("warning"))])


@keys_group.command("convert-address")
@click.argument("old_address", metavar="OLD_ADDRESS")
@json_option
def keys_convert_address(old_address, as_json):
    """The checksummed form (cx1...) of an address written before checksums (cx + 40 hex).

    The old form has no checksum, so a typo in it cannot be detected: confirm the result with
    the account's owner (they can run `cxl keys show` on their key) before sending to it."""
    try:
        new = convert_old_address(old_address)
    except ValueError:
        problem = address_problem(old_address)
        if problem is None:
            raise CliError(f"{old_address} is already a checksummed address; nothing to convert") from None
        raise CliError(f"{old_address!r} is not an old-form address (cx + 40 lower-case hex digits)") from None
    if as_json:
        print_json({"old": old_address, "address": new, "checked": False})
        return
    print(new)
    click.echo("warning: the old form has no checksum; confirm this address with its owner", err=True)
