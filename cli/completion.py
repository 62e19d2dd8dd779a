"""`cxl completion bash|zsh|fish`: print the shell completion script for `cxl`.

Click generates the script; the shell then calls `cxl` back with ``_CXL_COMPLETE`` set to
ask for candidates, which `cli.main.main` answers from the same command tree, so
completion never goes stale when a command or option is added.
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

COMPLETE_VAR = "_CXL_COMPLETE"  # click derives it from prog_name "cxl"; named here for the docs
SHELLS = ("bash", "zsh", "fish")


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def completion_cmd(shell: str) -> None:
    """Print the completion script for SHELL; load it from your shell's start-up file.

    \b
    bash (~/.bashrc):  eval "$(cxl completion bash)"
    zsh  (~/.zshrc):   eval "$(cxl completion zsh)"
    fish:              cxl completion fish > ~/.config/fish/completions/cxl.fish
    """
    root = click.get_current_context().find_root().command
    complete = get_completion_class(shell)(root, {}, "cxl", COMPLETE_VAR)
    click.echo(complete.source())
