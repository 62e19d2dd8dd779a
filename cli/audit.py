"""`cxl audit`: replay a chain from genesis, make and verify receipts, compare nodes.

Exit status: 0 when everything verifies (nodes agree), 1 when something does not verify
or the chain cannot be read, 2 for usage errors (click's convention, as in cli/main.py);
`compare` exits 3 when the nodes that answered agree but some node did not answer (the
comparison is incomplete; a difference found among the others is still 1).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from audit.compare import compare_nodes
from audit.receipt import ReceiptError, fetch_receipt, receipt_from_chain, verify_receipt
from audit.replay import replay
from audit.source import HttpSource, SourceError, open_home
from cli.timeparse import DurationType
from genesis.schema import load as load_genesis
from ledger.errors import LedgerError

genesis_option = click.option(
    "--genesis", "genesis_path", required=True, type=click.Path(exists=True, dir_okay=False),
    help="The chain's genesis file: the only thing trusted.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def _genesis(path: str):
    try:
        return load_genesis(path)
    except LedgerError as exc:
        raise click.ClickException(exc.message) from None


def _echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def _source(home: str | None, node: str | None):
    if (home is None) == (node is None):
        raise click.UsageError("give exactly one of --home DIR (a stopped node's data) or --node URL (a node's API)")
    try:
        return open_home(home) if home is not None else HttpSource(node)
    except SourceError as exc:
        raise click.ClickException(exc.message) from None


@click.group("audit")
def audit_group() -> None:
    """Verify a chain from its genesis file: replay, receipts, node comparison."""


@audit_group.command("replay")
@genesis_option
@click.option("--home", type=click.Path(exists=True, file_okay=False), help="A node's home directory (reads HOME/data, read-only). Stop the node first or point at a copy.")
@click.option("--node", "node_url", metavar="URL", help="A node's API URL, e.g. http://127.0.0.1:26701.")
@json_option
@click.option("--workers", type=click.IntRange(1, 256), default=None, help="Signature-checking processes [default: all cores].")
@click.option("--pool", type=click.Choice(["process", "thread"]), default="process", show_default=True, help="Kind of pool for signature checks.")
def replay_cmd(genesis_path, home, node_url, as_json, workers, pool) -> None:
    """Rebuild the chain from genesis and verify every block, certificate, signature and state root.

    Exit status 0 only when everything verifies; on failure the report names the first
    height that fails and what differs (expected: derived from genesis; got: what the
    node holds).
    """
    doc, ghash = _genesis(genesis_path)
    source = _source(home, node_url)
    bar = None

    def progress(height: int, head: int) -> None:
        nonlocal bar
        if bar is None:
            bar = click.progressbar(length=head, label="replaying", file=sys.stderr, show_pos=True, show_eta=True)
            bar.__enter__()
        bar.update(1)

    try:
        with source:
            report = replay(source, doc, ghash, workers=workers, pool=pool,
                            progress=progress if sys.stderr.isatty() else None)
    except SourceError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if as_json:
        _echo_json(report.to_json())
    else:
        click.echo(report.text())
    if not report.ok:
        sys.exit(1)


@audit_group.command("verify-receipt")
@click.argument("receipt_file", type=click.Path(exists=True, dir_okay=False))
@genesis_option
@json_option
def verify_receipt_cmd(receipt_file, genesis_path, as_json) -> None:
    """Verify a transaction receipt offline, with the genesis file alone."""
    doc, ghash = _genesis(genesis_path)
    try:
        receipt = json.loads(Path(receipt_file).read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise click.ClickException(f"cannot read {receipt_file} as JSON: {exc or 'nested too deeply'}") from None
    try:
        summary = verify_receipt(receipt, doc, ghash)
    except ReceiptError as exc:
        if as_json:
            _echo_json({"ok": False, "code": exc.code, "message": exc.message})
        else:
            click.echo(f"receipt does NOT verify: {exc.code}: {exc.message}")
        sys.exit(1)
    if as_json:
        _echo_json(summary)
        return
    click.echo(f"receipt verifies: transaction {summary['tx_hash']}")
    click.echo(f"  block {summary['height']} ({summary['block_hash'][:16]}), index {summary['index']}, "
               f"certified by {len(summary['signers'])} validators")
    click.echo(f"  {summary['type']} from {summary['sender']}: {summary['code']}"
               + (f" ({summary['message']})" if summary["message"] else ""))
    if summary["result"]:
        click.echo(f"  result: {json.dumps(summary['result'], sort_keys=True)}")
    if summary["validator_changes_walked"]:
        click.echo(f"  validator set changes proven at heights {summary['validator_changes_walked']}")


@audit_group.command("receipt")
@click.argument("tx_hash")
@genesis_option
@click.option("--home", type=click.Path(exists=True, file_okay=False), help="A stopped node's home directory.")
@click.option("--node", "node_url", metavar="URL", help="A node's API URL.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write the receipt here [default: stdout].")
@click.option("--json", "as_json", is_flag=True,
              help="With -o, print {file, tx_hash, height} as JSON; without, the receipt (always JSON).")
def receipt_cmd(tx_hash, genesis_path, home, node_url, output, as_json) -> None:
    """Write the receipt of a transaction (verify it with `cxl audit verify-receipt`)."""
    doc, ghash = _genesis(genesis_path)
    try:
        digest = bytes.fromhex(tx_hash)
    except ValueError:
        raise click.BadParameter("a transaction hash is 64 hex digits", param_hint="TX_HASH") from None
    try:
        if node_url is not None and home is None:
            receipt = fetch_receipt(node_url, digest, genesis_doc=doc, genesis_hash=ghash)
        else:
            from ledger.chain import Chain

            with _source(home, node_url) as source:
                receipt = receipt_from_chain(Chain(source.store, doc, ghash), digest)
    except (SourceError, ReceiptError) as exc:
        raise click.ClickException(exc.message) from None
    except LedgerError as exc:
        raise click.ClickException(exc.message) from None
    text = json.dumps(receipt, indent=2, sort_keys=True) + "\n"
    if output:
        Path(output).write_text(text)
        if as_json:
            _echo_json({"file": output, "tx_hash": tx_hash, "height": receipt["height"]})
            return
        click.echo(f"receipt for {tx_hash} (block {receipt['height']}) written to {output}", err=True)
    else:
        click.echo(text, nl=False)


INCOMPLETE_EXIT = 3


@audit_group.command("compare")
@click.argument("urls", nargs=-1, required=True)
@json_option
@click.option("--timeout", type=DurationType(bare_unit="s"), default="10s", show_default=True,
              help="How long to wait for each answer of a node before counting it unreachable (e.g. 10s, 1m).")
def compare_cmd(urls, as_json, timeout) -> None:
    """Ask several nodes for their blocks and name the first height where they differ.

    A node that does not answer is reported and the others are compared without it.
    Exit status: 0 all nodes answered and agree, 1 a difference, 3 the nodes that answered
    agree but not all answered (or fewer than two did)."""
    if len(urls) < 2:
        raise click.UsageError("give at least two node URLs")
    try:
        result = compare_nodes(list(urls), timeout=timeout / 1000)
    except SourceError as exc:
        raise click.ClickException(exc.message) from None
    if as_json:
        _echo_json(result.to_json())
    else:
        click.echo(result.text())
    if not result.agree:
        sys.exit(1)
    if not result.complete:
        sys.exit(INCOMPLETE_EXIT)
