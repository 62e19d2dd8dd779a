"""`cxl tx …` (transfer, governance, submit/show/decode) and `cxl account show`."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import sys
from pathlib import Path

import click

from cli.client import NodeError
from cli.common import CliError, client_for, json_option, node_option, print_fields, print_json, proposal_blocks_option
from cli.keys import address_or_key
from cli.light import emit, json_doc, light_options, trust_node_option, use_genesis, verified_get, verify_commit
from cli.submit import (DEFAULT_WAIT_S, TxOptions, describe_tx, dry_run_options, landed, receipt_ok, send_signed,
                        submit_tx, tx_options)
from cli.gov import gov_vote
from cli.timeparse import seconds_option
from ledger.errors import EncodingError, TxRejected
from ledger.governance import normalise_action
from ledger.tx import decode_tx

# Governance arguments that are integers on chain; everything else is text (hex keys included).
_INT_ARGS = {"value", "amount", "port"}


def _read_signed(source: str) -> bytes:
    """A signed tx from a file or stdin: base64 text, the JSON of `--sign-only --json`, or raw bytes."""
    try:
        data = sys.stdin.buffer.read() if source == "-" else open(source, "rb").read()
    except OSError as exc:
        raise CliError(f"cannot read {source}: {exc.strerror}") from None
    text = data.strip()
    if text.startswith(b"{"):
        try:
            text = json.loads(text)["tx"].encode()
        except (ValueError, KeyError, TypeError, AttributeError):
            raise CliError(f"{source}: JSON without a \"tx\" field holding the base64 transaction") from None
    try:
        return base64.b64decode(b"".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return data  # not base64: treat as the raw encoding; decode_tx says whether it is one


def _decode(source: str):
    try:
        return decode_tx(_read_signed(source))
    except EncodingError as exc:
        raise CliError(f"{source} does not hold a signed cxl transaction: {exc.message}") from None


@click.group("tx")
def tx_group() -> None:
    """Sign and send transactions; look them up."""


@tx_group.command("transfer")
@click.option("--to", required=True, metavar="ADDR", help="Recipient address (cx…).")
@click.option("--amount", required=True, type=click.IntRange(1), help="Credits in minor units.")
@click.option("--memo", default="", help="Free text stored with the transfer (at most 256 characters).")
@tx_options
def tx_transfer(to, amount, memo, txopts: TxOptions):
    """Move credits from the --key account to another address."""
    payload = {"to": address_or_key(to, "--to"), "amount": amount}
    if memo:
        if len(memo) > 256:
            raise click.BadParameter("at most 256 characters", param_hint="--memo")
        payload["memo"] = memo
    submit_tx(txopts, None, "transfer", payload)


def _parse_args(action: str, pairs: tuple[str, ...]) -> dict:
    args: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--arg")
        k, v = pair.split("=", 1)
        if k in _INT_ARGS:
            if not re.fullmatch(r"\d+", v):
                raise click.BadParameter(f"{k} must be a whole number, got {v!r}", param_hint="--arg")
            args[k] = int(v)
        else:
            args[k] = v
    try:
        normalise_action(action, args)  # the same check the chain makes, before anything is signed
    except TxRejected as exc:
        raise click.BadParameter(f"{action}: {exc.message}", param_hint="--arg") from None
    return args


@tx_group.command("propose")
@click.argument("action", type=click.Choice(["add_org", "remove_org", "add_member", "remove_member", "add_validator",
                                             "remove_validator", "update_validator", "set_param", "mint",
                                             "add_node", "remove_node"]), metavar="ACTION")
@click.option("--arg", "pairs", multiple=True, metavar="KEY=VALUE",
              help="An argument of the action (repeatable), e.g. --arg to=cx… --arg amount=100.")
@proposal_blocks_option("chain default")
@tx_options
def tx_propose(action, pairs, expires_in_blocks, txopts: TxOptions):
    """Open a governance proposal (admins only); your organisation votes yes.

    \b
    Actions and their arguments:
      add_org          org, name, admin (hex key)
      remove_org       org
      add_member       org, key (hex), role (admin|operator|auditor)
      remove_member    address
      add_validator    org, key (hex node key), p2p, api
      remove_validator key
      update_validator key (current), new_key, p2p, api (at least one of the three)
      set_param        name, value
      mint             to, amount
      add_node         org, key (hex node key), host, port (host/port optional)
      remove_node      key
    """
    payload: dict = {"action": action, "args": _parse_args(action, pairs)}
    if expires_in_blocks is not None:
        payload["expires_in"] = expires_in_blocks
    submit_tx(txopts, None, "propose", payload)


# `cxl tx vote` is `cxl gov vote`: one command object serves both groups
tx_group.add_command(gov_vote)


def _with_dry_run_options(fn):
    for opt in reversed(dry_run_options()):
        fn = opt(fn)
    return fn


@tx_group.command("submit")
@click.argument("source", metavar="FILE|-")
@node_option
@click.option("--no-wait", is_flag=True, help="Return once the node accepted it.")
@seconds_option("--timeout", default=f"{DEFAULT_WAIT_S:g}s", help="How long to wait for the commit")
@json_option
@light_options
@_with_dry_run_options
def tx_submit(source, node_url, no_wait, timeout, as_json, dry_run, force):
    """Send a transaction signed earlier (e.g. with --sign-only); FILE may be - for stdin."""
    stx = _decode(source)
    send_signed(TxOptions(node_url=node_url, wait=not no_wait, timeout=timeout, as_json=as_json, dry_run=dry_run,
                          force=force), stx)


@tx_group.command("decode")
@click.argument("source", metavar="FILE|-")
@click.option("--json", "as_json", is_flag=True, help="Accepted for uniformity: the output is always JSON.")
def tx_decode(source, as_json):
    """Show what a signed transaction says, offline (always JSON)."""
    stx = _decode(source)
    print_json({"hash": stx.hash.hex(), "signature_valid": stx.verify_signature(), **describe_tx(stx)})


@tx_group.command("show")
@click.argument("tx_hash", metavar="HASH")
@node_option
@seconds_option("--wait", default="0s", min_s=0, max_s=600,
                help="Wait up to this long for the transaction to commit")
@click.option("--receipt", "receipt_path", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Also write an offline-verifiable receipt (header, certificate, Merkle proofs, result) "
                   "here; check it with `cxl audit verify-receipt FILE --genesis GENESIS`.")
@click.option("--genesis", "genesis_path", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
              help="The chain's genesis file: verify a committed transaction against it (default: $CXL_GENESIS, "
                   "or `cxl light trust`); for --receipt, needed to prove validator-set changes when the set "
                   "that certified the block is not the genesis set.")
@trust_node_option
@json_option
def tx_show(tx_hash, node_url, wait, receipt_path, genesis_path, as_json):
    """Look up a transaction by hash: where it landed and its receipt.

    With a genesis file a committed transaction is verified: its inclusion and receipt against
    a header certified by the validator set of its height ("verified at height H")."""
    tx_hash = tx_hash.lower()
    if not re.fullmatch(r"[0-9a-f]{64}", tx_hash):
        raise click.BadParameter("a transaction hash is 64 hex digits", param_hint="HASH")
    client = client_for(node_url)
    try:
        record = client.tx(tx_hash, wait=math.ceil(wait) or None)  # the API takes whole seconds
    except NodeError as exc:
        if exc.status == 404:
            raise CliError(f"the node at {client.url} knows no transaction {tx_hash}") from None
        raise
    if receipt_path:
        _write_receipt(client.url, tx_hash, record, receipt_path, genesis_path)
    use_genesis(genesis_path)
    verified = verify_commit(client, record) if record.get("status") == "committed" else None
    if as_json:
        print_json(json_doc(record, verified))
        return
    tx = record.get("tx") or {}
    status = landed(record) if record.get("status") == "committed" else record.get("status")
    rows = [("hash", record.get("hash", tx_hash)), ("status", status), ("block hash", record.get("block_hash"))]
    rows += [(k, v) for k, v in tx.items() if k not in ("signature",)]
    print_fields(rows)
    emit(verified)
    if record.get("status") == "committed" and not receipt_ok(record):
        raise click.exceptions.Exit(1)


def _write_receipt(node_url: str, tx_hash: str, record: dict, path: str, genesis_path: str | None) -> None:
    from audit.receipt import ReceiptError, fetch_receipt
    from audit.source import SourceError
    from genesis.schema import load

    if record.get("status") != "committed":
        raise CliError(f"transaction {tx_hash} is {record.get('status')}: a receipt exists only once it is "
                       "committed (add --wait SECONDS)")
    doc, ghash = load(genesis_path) if genesis_path else (None, None)
    try:
        receipt = fetch_receipt(node_url, tx_hash, genesis_doc=doc, genesis_hash=ghash)
    except (ReceiptError, SourceError) as exc:
        raise CliError(f"cannot build the receipt: {exc}") from None
    Path(path).write_text(json.dumps(receipt, indent=2, sort_keys=True) + "\n")
    click.echo(f"receipt written to {path}; verify it offline with "
               f"`cxl audit verify-receipt {path} --genesis GENESIS`", err=True)


@click.group("account")
def account_group() -> None:
    """Look up accounts."""


@account_group.command("show")
@click.argument("account", metavar="ADDR|KEY")
@node_option
@light_options
@json_option
def account_show(account, node_url, as_json):
    """Balance, nonce and membership of an address (or of a key, by name or path).

    With a genesis file (--genesis, CXL_GENESIS or `cxl light trust`) the balance, nonce and
    membership are verified against a certified header ("verified at height H")."""
    address = address_or_key(account, "ADDR|KEY")
    info, verified = verified_get(client_for(node_url), f"/v1/accounts/{address}", "account", address)
    if as_json:
        print_json(json_doc(info, verified))
        return
    member = info.get("member")
    if isinstance(member, dict):
        member = f"{member.get('role')} of {member.get('org')}"
    pending = info.get("pending_nonce")
    print_fields([("address", info.get("address", address)), ("balance", info.get("balance")),
                  ("nonce", info.get("nonce")),
                  ("pending nonce", pending if pending is not None and pending != info.get("nonce") else None),
                  ("member", member or "not a member"), ("at height", info.get("height"))])
    emit(verified)
