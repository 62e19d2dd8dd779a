"""Pieces every command group shares: the --node/--json options and printing results.

Errors: commands raise `click.ClickException` (exit 1) for a failed operation and
`click.BadParameter`/`click.UsageError` (exit 2) for bad input; `ledger.errors.LedgerError`
and `cli.client.NodeError` raised anywhere below `cxl` are turned into exit 1 with their
message by the top-level group (`cli.main.CxlGroup`), so no user error ends in a traceback.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Callable

import click

from cli.client import DEFAULT_NODE_URL, NODE_ENV, NodeClient


class CliError(click.ClickException):
    """A failed operation: printed as ``Error: <message>``, exit status 1."""

    exit_code = 1


def node_option(f: Callable) -> Callable:
    return click.option(
        "--node", "node_url", envvar=NODE_ENV, default=DEFAULT_NODE_URL, show_default=True, show_envvar=True,
        metavar="URL", help="API URL of a node.",
    )(f)


def json_option(f: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(f)


def client_for(node_url: str | None, timeout: float | None = None) -> NodeClient:
    return NodeClient(node_url) if timeout is None else NodeClient(node_url, timeout)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def print_fields(rows: list[tuple[str, Any]]) -> None:
    """Aligned ``name  value`` lines for human output."""
    rows = [(k, v) for k, v in rows if v is not None]
    width = max((len(k) for k, _ in rows), default=0)
    for k, v in rows:
        click.echo(f"{k.ljust(width)}  {format_value(v)}")


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[format_value(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def format_value(v: Any) -> str:
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True, default=_jsonable)
    return str(v)


def read_secret_file(path: str) -> str:
    """A passphrase file's first line, without its line ending."""
    try:
        with open(path, encoding="utf-8") as fh:
            line = fh.readline()
    except OSError as exc:
        raise CliError(f"cannot read passphrase file {path}: {exc.strerror}") from None
    return line.rstrip("\r\n")


def parse_params(pairs: tuple[str, ...], option: str = "--param") -> dict:
    """``NAME=VALUE`` chain parameters (integers), checked against their allowed ranges."""
    from ledger.genesis_state import DEFAULT_PARAMS
    from ledger.governance import PARAM_RANGES

    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint=option)
        if name not in DEFAULT_PARAMS:
            raise click.BadParameter(f"unknown parameter {name!r} (known: {', '.join(sorted(DEFAULT_PARAMS))})",
                                     param_hint=option)
        lo, hi = PARAM_RANGES[name]
        if not value.isdigit() or not lo <= int(value) <= hi:
            raise click.BadParameter(f"{name} must be an integer in [{lo}, {hi}]", param_hint=option)
        out[name] = int(value)
    return out


def proposal_blocks_option(default_note: str) -> Callable:
    """``--expires-in-blocks N`` for governance proposals, delivered as ``expires_in_blocks``.

    Proposals expire at a block height, not a time, so the option names its unit. The old
    spelling ``--expires-in N`` (blocks here, while ``--expires-in`` is a duration such as
    ``90d`` everywhere else) still works, hidden, with a deprecation warning on stderr.
    """

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            blocks, old = kwargs.pop("expires_in_blocks"), kwargs.pop("deprecated_expires_in")
            if old is not None:
                if blocks is not None:
                    raise click.UsageError("give --expires-in-blocks only (--expires-in is its deprecated name)")
                click.echo("warning: --expires-in on proposals counts blocks and is deprecated; use "
                           f"--expires-in-blocks {old} (elsewhere --expires-in is a duration such as 90d)", err=True)
                blocks = old
            return fn(*args, expires_in_blocks=blocks, **kwargs)

        blocks_range = click.IntRange(1, 10_000_000)
        wrapper = click.option("--expires-in", "deprecated_expires_in", type=blocks_range, hidden=True)(wrapper)
        return click.option("--expires-in-blocks", type=blocks_range, metavar="BLOCKS",
                            help=f"Blocks the proposal stays open [{default_note}].")(wrapper)

    return decorate
