#!/usr/bin/env python3
"""Write docs/cli.md from the click command tree (`scripts/gen_cli_docs.py`).

tests/unit/test_cli_docs.py fails when a command is missing from docs/cli.md, so rerun
this after adding or changing a command.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cli.main import cli  # noqa: E402


def walk(cmd: click.Command, path: list[str]):
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            yield from walk(cmd.commands[name], path + [name])


def render() -> str:
    out = ["# `cxl` command reference", "",
           "Generated from the commands' own `--help` by `scripts/gen_cli_docs.py`; every",
           "command answers `--help` with the same text.", ""]
    for path, cmd in walk(cli, ["cxl"]):
        ctx = click.Context(cmd, info_name=" ".join(path), help_option_names=["-h", "--help"], max_content_width=100)
        out += [f"## `{' '.join(path)}`", "", "```", cmd.get_help(ctx).rstrip(), "```", ""]
    return "\n".join(out)


if __name__ == "__main__":
    (ROOT / "docs" / "cli.md").write_text(render())
    print("wrote docs/cli.md")
