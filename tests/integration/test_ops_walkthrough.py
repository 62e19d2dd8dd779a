"""docs/operations.md §1.1 (a new network) run as written: the shell blocks marked
``<!-- walkthrough:new-network:STEP -->`` are extracted from the doc and run with bash, by
four organisations on 127.0.0.x addresses (each in its own directory, as on its own
machine) and a coordinator; the nodes start as subprocesses, and the doc's first transfer
must commit. A doc command that fails fails this test."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("node.app", reason="node/ is not importable: nothing to run")

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "operations.md"
STEPS = ("each-org-keys", "coordinator-init", "coordinator-add-org", "coordinator-publish", "each-org-verify",
         "each-org-init",
         "each-org-start", "first-transfer")
ORGS = ("acme", "bravo", "charlie", "delta")
PORTS = (26601, 26701, 26801)  # p2p, api and metrics ports the walkthrough's genesis entries imply


def walkthrough_blocks(text: str) -> dict[str, str]:
    """STEP -> the ```sh block that follows its marker."""
    blocks = {}
    for m in re.finditer(r"<!-- walkthrough:new-network:([a-z-]+) -->\s*```sh\n(.*?)```", text, re.S):
        assert m.group(1) not in blocks, f"walkthrough step {m.group(1)} marked twice"
        blocks[m.group(1)] = m.group(2)
    return blocks


def test_the_doc_marks_every_walkthrough_step():
    assert set(walkthrough_blocks(DOC.read_text())) == set(STEPS)


def _free_on(host: str) -> bool:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def _hosts() -> list[str]:
    start = 20 + os.getpid() % 200
    free = [f"127.0.0.{x}" for x in range(start, 250) if _free_on(f"127.0.0.{x}")]
    if len(free) < len(ORGS):
        pytest.skip("not enough 127.0.0.x addresses with the walkthrough's ports free")
    return free[:len(ORGS)]


def _bin_dir(tmp_path: Path) -> Path:
    """A `cxl` on PATH that is this checkout's CLI."""
    d = tmp_path / "bin"
    d.mkdir()
    shim = d / "cxl"
    shim.write_text(f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -m cli.main "$@"\n')
    shim.chmod(0o755)
    return d


class Shell:
    def __init__(self, tmp_path: Path):
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CXL_")}
        self.env["PATH"] = f"{_bin_dir(tmp_path)}:{self.env['PATH']}"

    def run(self, script: str, cwd: Path, **variables) -> str:
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=self.env | variables,
                           capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            raise AssertionError(f"walkthrough block failed ({r.returncode}) in {cwd} with {variables}:\n{script}\n"
                                 f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        return r.stdout


def _json_objects(text: str) -> list[dict]:
    out, dec, i = [], json.JSONDecoder(), 0
    while (i := text.find("{", i)) != -1:
        obj, end = dec.raw_decode(text, i)
        out.append(obj)
        i = end
    return out


def _await_apis(orgs: dict, procs: list, patience_s: float = 120.0) -> None:
    """Until every node's API answers (the doc's `cxl status` step needs it up); fails
    with the node's output if one exits first."""
    import time
    import urllib.request

    deadline = time.monotonic() + patience_s
    for (org, o), p in zip(orgs.items(), procs):
        while True:
            if p.poll() is not None:
                raise AssertionError(f"{org}'s node exited ({p.returncode}):\n"
                                     + (o["dir"] / "console.log").read_text(errors="replace")[-3000:])
            try:
                with urllib.request.urlopen(f"http://{o['host']}:26701/v1/status", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{org}'s node API did not answer within {patience_s:g}s") from None
                time.sleep(0.2)


def test_new_network_walkthrough_as_written(tmp_path):
    blocks = walkthrough_blocks(DOC.read_text())
    sh = Shell(tmp_path)
    hosts = _hosts()
    coordinator = tmp_path / "coordinator"
    coordinator.mkdir()
    orgs = {}
    for org, host in zip(ORGS, hosts):
        d = tmp_path / org
        d.mkdir()
        (d / "passphrase").write_text(f"walkthrough passphrase of {org}\n")
        (d / "passphrase").chmod(0o600)
        admin, node = _json_objects(sh.run(blocks["each-org-keys"], d, ORG=org, HOST=host))
        orgs[org] = {"dir": d, "host": host, "admin": admin, "node": node}

    sh.run(blocks["coordinator-init"], coordinator)
    for org, o in orgs.items():
        sh.run(blocks["coordinator-add-org"], coordinator, ORG=org, HOST=o["host"],
               ADMIN_KEY=o["admin"]["public_key"], NODE_KEY=o["node"]["public_key"])
    published = sh.run(blocks["coordinator-publish"], coordinator).split()[-1]
    assert re.fullmatch(r"[0-9a-f]{64}", published)

    for org, o in orgs.items():
        shutil.copy(coordinator / "genesis.json", o["dir"] / "genesis.json")
        assert "genesis hash verified" in sh.run(blocks["each-org-verify"], o["dir"], GENESIS_HASH=published)
        sh.run(blocks["each-org-init"], o["dir"], ORG=org)
        config = json.loads((o["dir"] / "node" / "config.json").read_text())
        assert (config["p2p_host"], config["api_host"]) == (o["host"], o["host"])

    # a tampered genesis fails the doc's hash check
    bad = tmp_path / "tampered"
    bad.mkdir()
    doc = json.loads((coordinator / "genesis.json").read_text())
    doc["balances"][0]["amount"] += 1
    (bad / "genesis.json").write_text(json.dumps(doc))
    with pytest.raises(AssertionError, match="walkthrough block failed") as refused:
        sh.run(blocks["each-org-verify"], bad, GENESIS_HASH=published)
    assert "genesis hash verified" not in str(refused.value).split("stdout:", 1)[1]

    procs = []
    try:
        for org, o in orgs.items():
            log = open(o["dir"] / "console.log", "wb")
            procs.append(subprocess.Popen(["bash", "-euo", "pipefail", "-c", blocks["each-org-start"]], cwd=o["dir"],
                                          env=sh.env | {"ORG": org}, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))
        _await_apis(orgs, procs)
        sender, receiver = orgs["acme"], orgs["delta"]
        try:
            out = sh.run(blocks["first-transfer"], sender["dir"], ORG="acme", HOST=sender["host"],
                         TO=receiver["admin"]["address"])
        except AssertionError as exc:
            logs = "\n".join(f"--- {org}\n" + (o["dir"] / "console.log").read_text(errors="replace")[-3000:]
                             for org, o in orgs.items())
            raise AssertionError(f"{exc}\n{logs}") from None
        assert "capacity-1" in out  # cxl status names the chain
        r = subprocess.run(["cxl", "account", "show", receiver["admin"]["address"], "--node",
                            f"http://{receiver['host']}:26701", "--json"],
                           env=sh.env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["balance"] == 1_000_001
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
