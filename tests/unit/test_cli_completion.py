"""`cxl completion bash|zsh|fish` prints a script; the shell, calling `cxl` back, gets candidates."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli

BIN = Path(sys.executable).parent  # the venv's bin/, where the `cxl` entry point is installed


def _env(**extra) -> dict:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o nosort -F _cxl_completion cxl"),
                                           ("zsh", "#compdef cxl"), ("fish", "complete --no-files --command cxl")])
def test_script_is_printed(shell, marker):
    r = CliRunner().invoke(cli, ["completion", shell])
    assert r.exit_code == 0, r.output
    assert marker in r.stdout and "_CXL_COMPLETE" in r.stdout


def test_unknown_shell_is_a_usage_error():
    r = CliRunner().invoke(cli, ["completion", "tcsh"])
    assert r.exit_code == 2 and "bash" in r.output


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completes_commands_and_options_through_the_script():
    if not (BIN / "cxl").exists():
        pytest.skip("the cxl entry point is not installed in this environment")
    script = subprocess.run([BIN / "cxl", "completion", "bash"], capture_output=True, text=True, check=True,
                            timeout=60).stdout

    def probe(words: str, cword: int) -> str:
        return script + f'\nCOMP_WORDS=(cxl {words}); COMP_CWORD={cword}; _cxl_completion cxl; ' \
                        'printf "%s\\n" "${COMPREPLY[@]}"\n'

    groups = subprocess.run(["bash", "-c", probe("le", 1)], capture_output=True, text=True, env=_env(), timeout=60)
    assert groups.returncode == 0, groups.stderr
    assert groups.stdout.split() == ["lease"]
    options = subprocess.run(["bash", "-c", probe("attest create --expi", 3)],
                             capture_output=True, text=True, env=_env(), timeout=60)
    assert set(options.stdout.split()) == {"--expires-in", "--expires", "--expiry"}, options.stdout


def test_zsh_protocol_answers_with_descriptions():
    if not (BIN / "cxl").exists():
        pytest.skip("the cxl entry point is not installed in this environment")
    r = subprocess.run([BIN / "cxl"], capture_output=True, text=True, timeout=60,
                       env=_env(_CXL_COMPLETE="zsh_complete", COMP_WORDS="cxl comp", COMP_CWORD="1"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:2] == ["plain", "completion"]
