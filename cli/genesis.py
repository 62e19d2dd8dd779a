"""`cxl genesis …`: build a genesis file step by step, validate it, print its hash.

`init` writes a skeleton with no organisations or validators (which `validate` would
refuse); `add-org` and `add-validator` fill it, each checking everything added so far,
so a mistake is reported at the step that made it. `validate` and node start apply the
full check (`genesis.schema.validate`).
"""

from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path

import click

from cli.common import CliError, json_option, parse_params, print_fields, print_json
from cli.keys import keyfile_public_key
from cli.timeparse import format_time, time_option
from genesis.schema import genesis_hash, load, validate
from ledger.crypto import address_of
from ledger.errors import GenesisError

DEFAULT_GENESIS = "genesis.json"
# Stands in for the missing validator while a genesis under construction is checked.
_PLACEHOLDER_KEY = "ff" * 32


def _read_draft(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise CliError(f"{path} does not exist; create it with `cxl genesis init --chain-id ID --out {path}`")
    try:
        doc = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise CliError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from None
    if not isinstance(doc, dict):
        raise CliError(f"{path}: a genesis file is a JSON object")
    for field in ("orgs", "validators", "balances"):
        doc.setdefault(field, [])
        if not isinstance(doc[field], list):
            raise CliError(f"{path}: {field}: must be a list")
    return doc


def check_draft(doc: dict, path: str | None = None) -> None:
    """Validate a genesis under construction: complete except that it may lack validators."""
    try:
        _check_draft(doc)
    except GenesisError as exc:
        where = f"{path}: " if path else ""
        raise CliError(f"{where}{exc.message} (nothing written)") from None


def _check_draft(doc: dict) -> None:
    probe = copy.deepcopy(doc)
    if not probe.get("validators") and probe.get("orgs"):
        first = probe["orgs"][0].get("id") if isinstance(probe["orgs"][0], dict) else None
        probe["validators"] = [{"org": first, "key": _PLACEHOLDER_KEY,
                                "p2p": "http://placeholder:1", "api": "http://placeholder:1"}]
    validate(probe)


def _write_draft(doc: dict, path: str) -> None:
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")


def _keys_from(hexes: tuple[str, ...], files: tuple[str, ...], what: str) -> list[str]:
    keys = []
    for h in hexes:
        h = h.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", h):
            raise click.BadParameter("must be a 32-byte public key as 64 hex digits", param_hint=f"--{what}-key")
        keys.append(h)
    for f in files:
        keys.append(keyfile_public_key(f))
    return keys


def _url(value: str, opt: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+(:\d+)?/?", value):
        raise click.BadParameter("must be a URL like http://host:port", param_hint=opt)
    return value.rstrip("/")


genesis_file_option = click.option(
    "--genesis", "-g", "genesis_path", default=DEFAULT_GENESIS, show_default=True, type=click.Path(dir_okay=False),
    help="The genesis file to edit.",
)
keyfile_type = click.Path(exists=True, dir_okay=False)


@click.group("genesis")
def genesis_group() -> None:
    """Create, edit, validate and hash a genesis file."""


@genesis_group.command("init")
@click.option("--chain-id", required=True, help="Chain id: 1-64 letters, digits, '.', '_' or '-'.")
@click.option("--out", "-o", default=DEFAULT_GENESIS, show_default=True, type=click.Path(dir_okay=False))
@time_option("--genesis-time", "--genesis-time-ms", "genesis_time_ms", help="Genesis time [default: now]")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A chain parameter (repeatable), e.g. --param block_interval_ms=200.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@json_option
def genesis_init(chain_id, out, genesis_time_ms, params, force, as_json):
    """Write a genesis skeleton; fill it with `add-org` and `add-validator`."""
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", chain_id):
        raise click.BadParameter("must be 1-64 characters of letters, digits, '.', '_' or '-'", param_hint="--chain-id")
    if Path(out).exists() and not force:
        raise CliError(f"{out} exists; pass --force to overwrite it or --out to write elsewhere")
    doc = {"chain_id": chain_id,
           "genesis_time_ms": genesis_time_ms if genesis_time_ms is not None else int(time.time() * 1000),
           "params": parse_params(params), "orgs": [], "validators": [], "balances": []}
    _write_draft(doc, out)
    if as_json:
        print_json({"file": out, "chain_id": chain_id, "genesis_time_ms": doc["genesis_time_ms"],
                    "params": doc["params"]})
        return
    click.echo(f"wrote {out} (chain {chain_id}, genesis time {format_time(doc['genesis_time_ms'])}); next: `cxl genesis add-org …` and `cxl genesis add-validator …`")


@genesis_group.command("add-org")
@genesis_file_option
@click.option("--id", "org_id", required=True, help="Organisation id: 1-32 of a-z, 0-9, '-'.")
@click.option("--name", required=True, help="Display name (1-128 characters).")
@click.option("--admin-key", multiple=True, metavar="HEX", help="Admin public key (repeatable).")
@click.option("--admin-keyfile", multiple=True, type=keyfile_type, help="Admin key file (repeatable).")
@click.option("--operator-key", multiple=True, metavar="HEX", help="Operator public key (repeatable).")
@click.option("--operator-keyfile", multiple=True, type=keyfile_type, help="Operator key file (repeatable).")
@click.option("--auditor-key", multiple=True, metavar="HEX", help="Auditor public key (repeatable).")
@click.option("--auditor-keyfile", multiple=True, type=keyfile_type, help="Auditor key file (repeatable).")
@click.option("--balance", type=click.IntRange(0), default=0, show_default=True,
              help="Credits (minor units) given to each admin and operator key.")
@json_option
def genesis_add_org(genesis_path, org_id, name, admin_key, admin_keyfile, operator_key, operator_keyfile,
                    auditor_key, auditor_keyfile, balance, as_json):
    """Add an organisation with its members (at least one admin) to the genesis file."""
    admins = _keys_from(admin_key, admin_keyfile, "admin")
    if not admins:
        raise click.UsageError("an organisation needs an admin: give --admin-key HEX or --admin-keyfile PATH")
    operators = _keys_from(operator_key, operator_keyfile, "operator")
    auditors = _keys_from(auditor_key, auditor_keyfile, "auditor")
    doc = _read_draft(genesis_path)
    members = ([{"key": k, "role": "admin"} for k in admins] + [{"key": k, "role": "operator"} for k in operators]
               + [{"key": k, "role": "auditor"} for k in auditors])
    doc["orgs"].append({"id": org_id, "name": name, "members": members})
    if balance:
        for k in admins + operators:
            doc["balances"].append({"address": address_of(bytes.fromhex(k)), "amount": balance})
    check_draft(doc, genesis_path)
    _write_draft(doc, genesis_path)
    if as_json:
        print_json({"file": genesis_path, "org": org_id, "admins": admins, "operators": operators,
                    "auditors": auditors, "balance": balance})
        return
    click.echo(f"added organisation {org_id} ({len(admins)} admin, {len(operators)} operator, "
               f"{len(auditors)} auditor) to {genesis_path}")


@genesis_group.command("add-validator")
@genesis_file_option
@click.option("--org", required=True, help="Id of the organisation running the validator.")
@click.option("--node-key", metavar="HEX", help="The node's public key.")
@click.option("--node-keyfile", type=keyfile_type, help="The node's key file.")
@click.option("--p2p", required=True, metavar="URL", help="Peer-to-peer URL, e.g. http://10.0.0.1:26600.")
@click.option("--api", required=True, metavar="URL", help="Client API URL, e.g. http://10.0.0.1:26700.")
@json_option
def genesis_add_validator(genesis_path, org, node_key, node_keyfile, p2p, api, as_json):
    """Add a validator (node key + endpoints) of an organisation already in the file."""
    if bool(node_key) == bool(node_keyfile):
        raise click.UsageError("give exactly one of --node-key HEX or --node-keyfile PATH")
    key = _keys_from((node_key,) if node_key else (), (node_keyfile,) if node_keyfile else (), "node")[0]
    doc = _read_draft(genesis_path)
    if not any(isinstance(o, dict) and o.get("id") == org for o in doc["orgs"]):
        known = ", ".join(str(o.get("id")) for o in doc["orgs"] if isinstance(o, dict)) or "none yet"
        raise CliError(f"--org: no organisation {org!r} in {genesis_path} (known: {known}); add it with `cxl genesis add-org`")
    doc["validators"].append({"org": org, "key": key, "p2p": _url(p2p, "--p2p"), "api": _url(api, "--api")})
    check_draft(doc, genesis_path)
    _write_draft(doc, genesis_path)
    if as_json:
        print_json({"file": genesis_path, **doc["validators"][-1], "validators": len(doc["validators"])})
        return
    click.echo(f"added validator {key[:16]}… of {org} to {genesis_path} ({len(doc['validators'])} validators)")


@genesis_group.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
@json_option
def genesis_validate(file, as_json):
    """Check a genesis file completely; print its hash if it is valid."""
    try:
        doc, h = load(file)
    except GenesisError as exc:
        raise CliError(f"{file} is not a valid genesis: {exc.message}") from None
    if as_json:
        print_json({"valid": True, "chain_id": doc["chain_id"], "genesis_hash": h.hex(), "orgs": len(doc["orgs"]),
                    "validators": len(doc["validators"]), "balances": len(doc["balances"])})
        return
    click.echo(f"{file} is valid")
    print_fields([("chain id", doc["chain_id"]), ("genesis time", format_time(doc["genesis_time_ms"])), ("orgs", len(doc["orgs"])), ("validators", len(doc["validators"])),
                  ("supply", sum(b["amount"] for b in doc["balances"])), ("genesis hash", h.hex())])


@genesis_group.command("hash")
@click.argument("file", type=click.Path(dir_okay=False))
@json_option
def genesis_hash_cmd(file, as_json):
    """Print the genesis hash (SHA-256 of the canonical encoding) of a valid genesis file."""
    try:
        doc, h = load(file)
    except GenesisError as exc:
        raise CliError(f"{file} is not a valid genesis: {exc.message}") from None
    if as_json:
        print_json({"file": file, "chain_id": doc["chain_id"], "genesis_hash": h.hex()})
        return
    click.echo(h.hex())


__all__ = ["genesis_group", "check_draft", "genesis_hash"]
