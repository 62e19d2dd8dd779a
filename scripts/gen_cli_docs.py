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


VERIFIED_READS = """**Verified reads.** `cxl` does not take one node's word for state. With the chain's genesis
file — `--genesis FILE` (on `cxl` itself or on the command), else `$CXL_GENESIS`, else the file
remembered by `cxl light trust FILE` (a copy in `$CXL_HOME/genesis.json`, `$CXL_HOME` defaulting
to `~/.cxl`) — every state read (`account show`, `listing show`, `lease show`, `attest show`,
`gov show`, `gov orgs ORG`, `gov params`) asks the node for `?prove=1`, follows the certified
validator-set changes from the genesis set up to the answer's height
(`GET /v1/light/validator_changes`, each change proven by its own certified block), checks
the header's certificate against the set deciding that height and every Merkle proof
against its state root, and checks that the fields it prints are the proven values; then it
prints `verified at height H (block …)` and names the fields the proof does not cover
(derived by the node, e.g. a lease's usage reports). `--json` adds
`"verified": {"height", "block_hash", "state_root", "not_proven"}`. Every transaction
command that waits for its commit, and `cxl tx show` of a committed transaction, verify it
too when a genesis is known: the transaction's inclusion and receipt against a certified header. A check that fails is
`Error: verification failed [CODE]: …` and exit 1, `CODE` naming the check (protocol.md
§6.2: `cert_signature`, `state_proof`, `validators_hash`, `vset_gap`, `vset_hash`,
`answer` …): the node is faulty or lying; ask another one. The validator sets verified so
far are cached in `$CXL_HOME/light/<genesis hash>.json` (only verified sets; `cxl light
status` shows them, `cxl light forget` drops them), so later reads follow only new changes.
`--trust-node` skips verification (said on stderr). Without any genesis file a state read
still prints the node's answer, unchanged, with `warning: not verified: …` on stderr, and a
commit wait is not verified. List commands (`listing list`, `lease list`, `attest list`,
`gov list`, `gov orgs`, `lease account`) are not provable and say so on stderr.
""".splitlines() + [""]


def render() -> str:
    out = ["# `cxl` command reference", "",
           "Generated from the commands' own `--help` by `scripts/gen_cli_docs.py`; every",
           "command answers `--help` with the same text.", "",
           "**Times and durations.** Every option that takes a time (`TIME`) accepts ISO-8601 with a zone",
           "(`2026-12-01T10:00Z`, `2026-12-01T11:00+01:00`; a bare date is midnight UTC), `now`, a duration",
           "from now (`2h`, `+3d`, `-10m`) or, for scripts, epoch milliseconds. A `DURATION` is `500ms`, `30s`,",
           "`90m`, `2h`, `3d`, `1w`, `1d12h` or ISO-8601 `PT2H`; timeouts and waits are durations too (a bare number there is",
           "seconds, as before). `--expires-in` is a duration wherever it",
           "appears; proposals, which expire at a block height, take `--expires-in-blocks` (their old",
           "`--expires-in N` still works, with a deprecation warning). Tables print times as ISO-8601 UTC;",
           "`--json` output keeps the node's integer `*_ms` fields unchanged (nothing added, nothing renamed),",
           "so scripts that read it keep working (see `cli/timeparse.py`).", "",
           *VERIFIED_READS,
           "**Parallel sends with one key.** A transaction command without `--nonce` reserves its nonce",
           "under a per-address lock file in `$CXL_NONCE_DIR` (default `~/.cxl/nonces/`), held from asking",
           "the node until the node accepted the transaction, and records the next nonce there for a minute",
           "(so calls sent to different nodes do not collide either). Parallel `cxl` processes with one key",
           "on one machine therefore all succeed; see `cli/nonces.py`.", ""]
    for path, cmd in walk(cli, ["cxl"]):
        ctx = click.Context(cmd, info_name=" ".join(path), help_option_names=["-h", "--help"], max_content_width=100)
        out += [f"## `{' '.join(path)}`", "", "```", cmd.get_help(ctx).rstrip(), "```", ""]
    return "\n".join(out)


if __name__ == "__main__":
    (ROOT / "docs" / "cli.md").write_text(render())
    print("wrote docs/cli.md")
