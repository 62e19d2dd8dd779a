"""docs/cli.md lists every `cxl` command (regenerate with scripts/gen_cli_docs.py)."""

from pathlib import Path

import click

from cli.main import cli

DOC = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()


def _paths(cmd, path):
    yield path
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            yield from _paths(sub, path + [name])


def test_every_command_is_documented():
    missing = [" ".join(p) for p in _paths(cli, ["cxl"]) if f"## `{' '.join(p)}`" not in DOC]
    assert not missing, f"run scripts/gen_cli_docs.py; missing from docs/cli.md: {missing}"
