"""`cxl`: the command-line interface.

Exit codes follow click's convention: 0 success, 1 a failed operation (the node refused,
a receipt failed, a wrong passphrase, an invalid file …), 2 a usage error; `cxl audit
compare` alone adds 3, an incomplete comparison (some node did not answer). User errors
never end in a traceback: the group below turns the ledger's and the node client's typed
errors into one ``Error: …`` line that says what to do.
"""

from __future__ import annotations

import click

from cli.audit import audit_group
from cli.client import NodeError
from cli.completion import completion_cmd
from cli.genesis import genesis_group
from cli.gov import gov_group
from cli.keys import keys_group
from cli.light import light_group, light_options
from cli.localnet import localnet_group
from cli.market import attest_group, lease_group, listing_group
from cli.node import block_group, node_group, status_cmd
from cli.testnet import testnet_group
from cli.tx import account_group, tx_group
from ledger.errors import LedgerError


class CxlGroup(click.Group):
    """Turns typed errors raised by any subcommand into a clean message and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NodeError as exc:  # the HTTP client: unreachable node or an API error body
            raise click.ClickException(str(exc)) from None
        except LedgerError as exc:  # keystore, genesis, encoding, rejected transactions
            raise click.ClickException(exc.message) from None
        except _node_package_error() as exc:  # node.errors.NodeError: config problems and the like
            raise click.ClickException(exc.message) from None
        except OSError as exc:  # a file or directory the user named cannot be read or written
            if exc.filename is None:
                raise
            raise click.ClickException(f"{exc.filename}: {exc.strerror}") from None


def _node_package_error() -> type[Exception]:
    try:
        from node.errors import NodeError as NodePackageError
    except ImportError:  # pragma: no cover - node/ is part of the same distribution
        return _Never
    return NodePackageError


class _Never(Exception):
    pass


@click.group(cls=CxlGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="cxl", prog_name="cxl")
@light_options
def cli() -> None:
    """cxl: a permissioned BFT ledger for a market in spare data-centre capacity.

    \b
    Quick start (one validator on this machine):
      cxl localnet init --validators 1 --dir ./localnet
      cxl localnet start --dir ./localnet            # in another terminal
      cxl tx transfer --key ./localnet/keys/org1-admin.json --to cx… --amount 100
      cxl --genesis ./localnet/genesis.json account show cx…   # verified at height H

    State reads are verified against the genesis file given with --genesis (here or on the
    command), $CXL_GENESIS or `cxl light trust FILE`; --trust-node skips that.
    """


# Market and audit commands live in modules their owners write (cli/market.py, cli/audit.py);
# they are part of the CLI, so their imports are not optional: a broken module fails loudly.
for command in (keys_group, genesis_group, node_group, status_cmd, tx_group, account_group, block_group,
                localnet_group, testnet_group, audit_group, listing_group, lease_group, attest_group, gov_group, light_group,
                completion_cmd):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="cxl")


if __name__ == "__main__":
    main()
