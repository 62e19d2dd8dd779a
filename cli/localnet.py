"""`cxl localnet init|start|status`: an N-validator network on this machine, for development.

`start` runs each validator as a child process (``python -m cli.main node start``) in its
own process group, so a Ctrl-C at the terminal reaches only the supervisor, which then
stops the children in order: SIGTERM, a grace period, SIGKILL for any that hang.
While it runs, ``DIR/run.json`` lists the supervisor's and the children's process ids.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from cli.client import NodeClient, NodeError
from cli.common import CliError, parse_params, print_json, print_table
from cli.timeparse import seconds_option
from genesis.localnet import (DEFAULT_BALANCE, DEFAULT_BASE_PORT, DEFAULT_CHAIN_ID, MANIFEST_FILE, LocalnetError,
                              create_localnet, load_manifest, save_manifest)

RUN_FILE = "run.json"
CONSOLE_LOG = "console.log"  # the child's stdout/stderr; the node's own log is HOME/node.log


def _manifest(directory: str) -> dict:
    try:
        return load_manifest(directory)
    except LocalnetError as exc:
        raise CliError(str(exc)) from None


def _remove_old(root: Path) -> None:
    """--force: delete what an earlier `localnet init` made here, and nothing else."""
    try:
        old = load_manifest(root)
    except LocalnetError:
        old = {"nodes": []}
    for node in old.get("nodes", []):
        home = Path(node.get("home", ""))
        if home.is_dir() and root in home.resolve().parents:
            shutil.rmtree(home)
    if (root / "keys").is_dir():
        shutil.rmtree(root / "keys")
    for name in ("genesis.json", MANIFEST_FILE, RUN_FILE):
        (root / name).unlink(missing_ok=True)


@click.group("localnet")
def localnet_group() -> None:
    """Run a development network of N validators on this machine."""


@localnet_group.command("init")
@click.option("--validators", "-n", "n", type=click.IntRange(1, 99), default=1, show_default=True,
              help="Number of validators (one organisation each).")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False), help="Where to write the network.")
@click.option("--chain-id", default=DEFAULT_CHAIN_ID, show_default=True)
@click.option("--base-port", type=click.IntRange(1024, 65000), default=DEFAULT_BASE_PORT, show_default=True,
              help="Node K gets P2P port BASE+K and API port BASE+100+K.")
@click.option("--balance", type=click.IntRange(0), default=DEFAULT_BALANCE, show_default=True,
              help="Credits (minor units) for each admin and operator key.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A chain parameter (repeatable), e.g. --param block_interval_ms=50.")
@click.option("--force", is_flag=True, help="Replace a network already initialised in DIR (its chain data is lost).")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def localnet_init(n, directory, chain_id, base_port, balance, params, force, as_json):
    """Write genesis, dev keys, one node home per validator and DIR/localnet.json."""
    from node.config import init_home
    from node.errors import NodeError as NodeConfigError

    chain_params = parse_params(params)
    root = Path(directory).resolve()
    if (root / MANIFEST_FILE).exists():
        if not force:
            raise CliError(f"{root} already holds a localnet; start it with `cxl localnet start --dir {directory}`, "
                           "or pass --force to replace it")
        _remove_old(root)
    try:
        manifest = create_localnet(root, n, chain_id=chain_id, base_port=base_port, balance=balance,
                                   params=chain_params, overwrite=force)
        for node in manifest["nodes"]:
            init_home(node["home"], manifest["genesis"], node["node_key"]["path"], overwrite=force,
                      api_port=node["api_port"], p2p_port=node["p2p_port"])
    except LocalnetError as exc:
        raise click.UsageError(str(exc)) from None
    except NodeConfigError as exc:
        raise CliError(exc.message) from None
    path = save_manifest(root, manifest)
    if as_json:
        print_json(manifest)
        return
    click.echo(f"localnet {chain_id}: {n} validator(s) in {root}")
    print_table(["NODE", "ORG", "API", "P2P", "HOME"],
                [[m["name"], m["org"], m["api"], m["p2p"], m["home"]] for m in manifest["nodes"]])
    click.echo("")
    print_table(["ORG", "ROLE", "ADDRESS", "KEY FILE"],
                [[o["id"], role, k["address"], k["path"]] for o in manifest["orgs"] for role, k in o["keys"].items()])
    click.echo(f"\nmanifest: {path}\nwarning: {manifest['dev_keys_warning']}")
    click.echo(f"start it with: cxl localnet start --dir {directory}")


def _answering(api: str, timeout: float = 1.0) -> dict | None:
    try:
        return NodeClient(api, timeout=timeout).status()
    except NodeError:
        return None


def _count(value) -> int | None:
    return len(value) if isinstance(value, (list, dict)) else value


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM if the supervisor dies without stopping it (e.g. SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class _Supervisor:
    def __init__(self, manifest: dict):
        self.nodes = manifest["nodes"]
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}

    def spawn(self) -> None:
        for node in self.nodes:
            home = Path(node["home"])
            log = home / CONSOLE_LOG
            self.logs[node["name"]] = log
            with open(log, "ab") as out:
                self.procs[node["name"]] = subprocess.Popen(
                    [sys.executable, "-m", "cli.main", "node", "start", "--home", str(home)],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,  # our own Ctrl-C handling decides how children stop
                    preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
                )

    def exited(self) -> dict[str, int]:
        return {name: p.returncode for name, p in self.procs.items() if p.poll() is not None}

    def stop(self, grace: float) -> list[str]:
        """SIGTERM all, wait up to `grace` seconds, SIGKILL the rest; names of those killed."""
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        killed = []
        for name, p in self.procs.items():
            if p.poll() is None:
                p.kill()
                p.wait()
                killed.append(name)
        return killed


@localnet_group.command("start")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, exists=True),
              help="A directory made by `cxl localnet init`.")
@seconds_option("--timeout", default="60s", help="How long to wait for every node's API to answer")
@seconds_option("--stop-timeout", default="10s", min_s=0, help="Grace period after SIGTERM before children are killed")
def localnet_start(directory, timeout, stop_timeout):
    """Run every validator as a child process until Ctrl-C or SIGTERM."""
    manifest = _manifest(directory)
    root = Path(directory).resolve()
    for node in manifest["nodes"]:
        if not (Path(node["home"]) / "config.json").exists():
            raise CliError(f"{node['home']} is not a node home; re-create the network with "
                           f"`cxl localnet init --dir {directory} --force`")
        if _answering(node["api"], timeout=0.5) is not None:
            raise CliError(f"something already answers at {node['api']} ({node['name']}): is this localnet "
                           "already running? stop it first")

    stopping = {"signal": None}

    def on_signal(signum, _frame):
        stopping["signal"] = signum

    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    sup = _Supervisor(manifest)
    run_file = root / RUN_FILE
    rc = 0
    try:
        sup.spawn()
        run_file.write_text(json.dumps({"pid": os.getpid(), "nodes": [
            {"name": n["name"], "pid": sup.procs[n["name"]].pid, "api": n["api"]} for n in manifest["nodes"]]},
            indent=2) + "\n")
        click.echo(f"starting {len(sup.procs)} validator(s) of {manifest['chain_id']} ...")
        statuses = _await_ready(sup, manifest, timeout, stopping)
        if statuses is None:
            rc = 1 if stopping["signal"] is None else 0
        else:
            print_table(["NODE", "ORG", "API", "P2P", "PID", "HEIGHT", "LOG"],
                        [[n["name"], n["org"], n["api"], n["p2p"], sup.procs[n["name"]].pid,
                          statuses[n["name"]].get("height"), sup.logs[n["name"]]] for n in manifest["nodes"]])
            click.echo("localnet running; Ctrl-C (or SIGTERM) stops it")
            rc = _supervise(sup, stopping)
    finally:
        if sup.procs:
            click.echo("stopping localnet ...")
            killed = sup.stop(stop_timeout)
            if killed:
                click.echo(f"killed after {stop_timeout:g}s without exiting: {', '.join(killed)}", err=True)
            click.echo("localnet stopped")
        run_file.unlink(missing_ok=True)
        for s, h in old_handlers.items():
            signal.signal(s, h)
    if rc:
        raise click.exceptions.Exit(rc)


def _supervise(sup: _Supervisor, stopping: dict) -> int:
    """Until a stop signal: report children that exit; 1 if all of them did."""
    reported: set[str] = set()
    while stopping["signal"] is None:
        time.sleep(0.2)
        for name, code in sup.exited().items():
            if name not in reported:
                reported.add(name)
                click.echo(f"{name} exited with status {code}; its output is in {sup.logs[name]}:\n"
                           f"{_tail(sup.logs[name])}", err=True)
        if len(reported) == len(sup.procs):
            click.echo("every validator has exited", err=True)
            return 1
    return 0


def _await_ready(sup: _Supervisor, manifest: dict, timeout: float, stopping: dict) -> dict | None:
    """Each node's /v1/status once all answer; None (after saying why) if one died or time ran out."""
    deadline = time.monotonic() + timeout
    statuses: dict[str, dict] = {}
    while len(statuses) < len(manifest["nodes"]):
        if stopping["signal"] is not None:
            return None
        dead = sup.exited()
        if dead:
            for name, code in dead.items():
                click.echo(f"{name} exited with status {code} while starting; its output ({sup.logs[name]}):\n"
                           f"{_tail(sup.logs[name])}", err=True)
            return None
        if time.monotonic() > deadline:
            waiting = [n["name"] for n in manifest["nodes"] if n["name"] not in statuses]
            click.echo(f"no answer within {timeout:g}s from {', '.join(waiting)}; see their logs in "
                       + ", ".join(str(sup.logs[w]) for w in waiting), err=True)
            return None
        for node in manifest["nodes"]:
            if node["name"] not in statuses:
                st = _answering(node["api"])
                if st is not None:
                    statuses[node["name"]] = st
        time.sleep(0.2)
    return statuses


@localnet_group.command("status")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def localnet_status(directory, as_json):
    """Ask every node of the localnet for its status."""
    manifest = _manifest(directory)
    rows = []
    for node in manifest["nodes"]:
        st = _answering(node["api"])
        rows.append({"name": node["name"], "api": node["api"], "up": st is not None,
                     "height": (st or {}).get("height"), "view": (st or {}).get("view"),
                     "peers": _count((st or {}).get("peers"))})
    if as_json:
        print_json(rows)
        return
    print_table(["NODE", "API", "UP", "HEIGHT", "VIEW", "PEERS"],
                [[r["name"], r["api"], r["up"], r["height"], r["view"], r["peers"]] for r in rows])
    if not any(r["up"] for r in rows):
        raise CliError(f"no node answers; start the network with `cxl localnet start --dir {directory}`")
