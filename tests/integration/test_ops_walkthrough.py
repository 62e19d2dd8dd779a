"""docs/operations.md §1.1 (a new network) and §1.2 (joining it) run as written: the
shell blocks marked ``<!-- walkthrough:new-network:STEP -->`` / ``<!-- walkthrough:join:STEP
-->`` are extracted from the doc and run with bash, by four organisations on 127.0.0.x
addresses (each in its own directory, as on its own machine) and a coordinator; the nodes
start as subprocesses, and the doc's first transfer must commit. Then a fifth
organisation joins as §1.2 says: its full node follows once governance lists it, and it
votes once governance adds its validator, with no restart of anyone. A doc command that
fails fails this test."""

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
JOIN_STEPS = ("new-org-keys", "new-org-init", "new-org-start", "member-list-node", "member-vote", "new-org-status",
              "member-add-validator")
ORGS = ("acme", "bravo", "charlie", "delta")
NEW_ORG = "echo"
PORTS = (26601, 26701, 26801)  # p2p, api and metrics ports the walkthrough's genesis entries imply


def walkthrough_blocks(text: str, part: str = "new-network") -> dict[str, str]:
    """STEP -> the ```sh block that follows its marker."""
    blocks = {}
    for m in re.finditer(r"<!-- walkthrough:" + part + r":([a-z-]+) -->\s*```sh\n(.*?)```", text, re.S):
        assert m.group(1) not in blocks, f"walkthrough step {m.group(1)} marked twice"
        blocks[m.group(1)] = m.group(2)
    return blocks


def test_the_doc_marks_every_walkthrough_step():
    assert set(walkthrough_blocks(DOC.read_text())) == set(STEPS)
    assert set(walkthrough_blocks(DOC.read_text(), "join")) == set(JOIN_STEPS)


def _free_on(host: str) -> bool:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def _hosts(n: int) -> list[str]:
    start = 20 + os.getpid() % 200
    free = [f"127.0.0.{x}" for x in range(start, 250) if _free_on(f"127.0.0.{x}")]
    if len(free) < n:
        pytest.skip("not enough 127.0.0.x addresses with the walkthrough's ports free")
    return free[:n]


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
    hosts = _hosts(len(ORGS) + 1)
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
        _join_walkthrough(sh, tmp_path, orgs, hosts[len(ORGS)], procs, blocks, coordinator)
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


def _status(host: str) -> dict | None:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{host}:26701/v1/status", timeout=2) as r:
            return json.loads(r.read())
    except OSError:
        return None


def _until(what: str, cond, logs: list[Path], patience_s: float = 90.0):
    import time

    deadline = time.monotonic() + patience_s
    while not (value := cond()):
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p}\n" + p.read_text(errors="replace")[-3000:] for p in logs if p.exists())
            raise AssertionError(f"{what}: not within {patience_s:g}s\n{tails}")
        time.sleep(0.2)
    return value


def _join_walkthrough(sh: Shell, tmp_path: Path, orgs: dict, host: str, procs: list, blocks: dict,
                      coordinator: Path) -> None:
    """§1.2 as written: a fifth organisation follows with a full node, then votes."""
    join = walkthrough_blocks(DOC.read_text(), "join")
    d = tmp_path / NEW_ORG
    d.mkdir()
    (d / "passphrase").write_text(f"walkthrough passphrase of {NEW_ORG}\n")
    (d / "passphrase").chmod(0o600)
    shutil.copy(coordinator / "genesis.json", d / "genesis.json")
    admin, node = _json_objects(sh.run(join["new-org-keys"], d, ORG=NEW_ORG, HOST=host))
    sh.run(join["new-org-init"], d, ORG=NEW_ORG, HOST=host)
    config = json.loads((d / "node" / "config.json").read_text())
    assert config["role"] == "full" and (config["p2p_host"], config["api_host"]) == (host, host)
    log = open(d / "console.log", "wb")
    procs.append(subprocess.Popen(["bash", "-euo", "pipefail", "-c", join["new-org-start"]], cwd=d,
                                  env=sh.env | {"ORG": NEW_ORG}, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True))
    logs = [d / "console.log"] + [o["dir"] / "console.log" for o in orgs.values()]
    _until("the full node's API", lambda: _status(host), logs)
    assert _status(host)["role"] == "full" and _status(host)["height"] == 0  # nobody accepts it yet

    acme = orgs["acme"]
    member = {"NEW_ORG": NEW_ORG, "NEW_HOST": host, "NEW_ADMIN_KEY": admin["public_key"],
              "NEW_NODE_KEY": node["public_key"]}

    def propose(block: str) -> str:
        out = sh.run(join[block], acme["dir"], ORG="acme", NODE=f"http://{acme['host']}:26701", **member)
        return re.search(r"proposal (\d+) is open", out).group(1)

    def vote(pid: str, voters) -> None:
        for org in voters:
            o = orgs.get(org) or {"dir": d, "host": host}
            sh.run(join["member-vote"], o["dir"], ORG=org, NODE=f"http://{o['host']}:26701", ID=pid)

    vote(propose("member-list-node"), ("bravo", "charlie"))
    head = _status(acme["host"])["height"]
    _until("the listed full node follows", lambda: (_status(host) or {}).get("height", 0) >= head, logs)
    out = sh.run(join["new-org-status"], d, HOST=host)
    assert re.search(r"role\s+full", out) and re.search(r"behind\s+\d+ blocks", out), out

    # its validator: the new organisation votes too, through its own full node
    vote(propose("member-add-validator"), ("bravo", "charlie", NEW_ORG))

    def voting() -> bool:
        # blocks come with transactions: keep sending the doc's first transfer until the set changes
        sh.run(blocks["first-transfer"], acme["dir"], ORG="acme", HOST=acme["host"],
               TO=orgs["delta"]["admin"]["address"])
        return (_status(host) or {}).get("role") == "validator"

    _until("the new validator votes", voting, logs, patience_s=120)
    st = _status(host)
    assert st["follow"]["role_changes"][-1]["role"] == "validator"
    assert len(_status(acme["host"])["validators"]) == 5
    assert all(p.poll() is None for p in procs)  # nobody was restarted (or stopped)
