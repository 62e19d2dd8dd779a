"""The `cxl` tree: every command answers --help; typed errors become exit 1 without a traceback."""

import click
import pytest
from click.testing import CliRunner

from cli.main import cli


def walk(group: click.Group, prefix=()):
    for name, cmd in sorted(group.commands.items()):
        path = (*prefix, name)
        yield path
        if isinstance(cmd, click.Group):
            yield from walk(cmd, path)


ALL = list(walk(cli))


def test_the_tree_has_the_expected_commands():
    names = {" ".join(p) for p in ALL}
    for expected in ("keys new", "keys list", "keys show", "genesis init", "genesis add-org", "genesis add-validator",
                     "genesis validate", "genesis hash", "node init", "node start", "status", "tx transfer",
                     "tx submit", "tx show", "tx decode", "tx propose", "tx vote", "account show",
                     "localnet init", "localnet start", "localnet status", "block show", "audit", "listing",
                     "lease", "attest"):
        assert expected in names


@pytest.mark.parametrize("path", ALL, ids=[" ".join(p) for p in ALL])
def test_every_command_has_help(path):
    r = CliRunner().invoke(cli, [*path, "--help"])
    assert r.exit_code == 0, r.output
    assert "--help" in r.output


def test_unknown_command_is_a_usage_error():
    r = CliRunner().invoke(cli, ["nope"])
    assert r.exit_code == 2


def test_ledger_errors_exit_1_with_their_message(tmp_path):
    bad = tmp_path / "k.json"
    bad.write_text('{"kind": "something else"}')
    r = CliRunner().invoke(cli, ["keys", "show", str(bad)])
    assert r.exit_code == 1
    assert "is not a cxl key file" in r.stderr
    assert r.exception is None or isinstance(r.exception, SystemExit)
