"""`cxl testnet init --hosts` on a real multi-host network: four validators, each in its own
network namespace at its own address (tests/integration/netns.py `Fabric`), are created by
`cxl testnet init --hosts 10.77.0.1,…,10.77.0.4`, start from their homes unchanged (their
config listens at the host the genesis names), and commit a transfer sent with the CLI
from a fifth namespace. Needs root and iproute2; skipped with the reason otherwise."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from netharness import ROOT, http
from netns import Fabric, entered, netns_unavailable

REASON = netns_unavailable()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

CXL = [sys.executable, "-m", "cli.main"]


def cxl(*args, namespace: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXL_")}
    return subprocess.run([*prefix, *CXL, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=env)


def _await_api(fabric: Fabric, url: str, proc: subprocess.Popen, log, patience_s: float = 120.0) -> None:
    deadline = time.monotonic() + patience_s
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"node exited ({proc.returncode}):\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with entered(fabric.hub):
                http("GET", url + "/v1/status", timeout=2)
            return
        except Exception:  # noqa: BLE001 - not answering yet
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer within {patience_s:g}s") from None
            time.sleep(0.2)


def test_testnet_init_hosts_runs_on_four_hosts(tmp_path):
    fabric = Fabric(4)
    fabric.build()
    procs: list[subprocess.Popen] = []
    try:
        hosts = [Fabric.addr(i) for i in range(4)]
        r = cxl("testnet", "init", "--hosts", ",".join(hosts), "--dir", tmp_path / "net", "--chain-id", "netns-1",
                "--json")
        assert r.returncode == 0, r.stderr
        manifest = json.loads(r.stdout)
        assert [n["host"] for n in manifest["nodes"]] == hosts
        for ns, node in zip(fabric.nodes, manifest["nodes"]):
            log = tmp_path / f"{node['name']}.log"
            with open(log, "wb") as out:
                procs.append(subprocess.Popen(["ip", "netns", "exec", ns, *CXL, "node", "start", "--home",
                                               node["home"]], stdin=subprocess.DEVNULL, stdout=out,
                                              stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True))
        for p, node in zip(procs, manifest["nodes"]):
            _await_api(fabric, node["api"], p, tmp_path / f"{node['name']}.log")
        sender = manifest["orgs"][0]["keys"]["admin"]
        receiver = manifest["orgs"][3]["keys"]["admin"]
        r = cxl("tx", "transfer", "--key", sender["path"], "--to", receiver["address"], "--amount", 7,
                "--node", manifest["nodes"][0]["api"], "--json", namespace=fabric.hub)
        logs = "\n".join(f"--- {n['name']}\n" + (tmp_path / f"{n['name']}.log").read_text(errors="replace")[-2000:]
                         for n in manifest["nodes"])
        assert r.returncode == 0, f"{r.stdout}\n{r.stderr}\n{logs}"
        # every validator, asked at its own address, has the transfer committed (a replica
        # may apply the block a moment after the one that answered: poll, with patience)
        for node in manifest["nodes"]:
            deadline = time.monotonic() + 60
            while True:
                r = cxl("account", "show", receiver["address"], "--node", node["api"], "--json", namespace=fabric.hub)
                assert r.returncode == 0, r.stderr
                if json.loads(r.stdout)["balance"] == 10**12 + 7:
                    break
                assert time.monotonic() < deadline, f"{node['name']} never applied the transfer:\n{logs}"
                time.sleep(0.5)
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
        fabric.destroy()
