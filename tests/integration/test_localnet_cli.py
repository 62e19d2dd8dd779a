"""End to end through the CLI only: `cxl localnet init/start`, `cxl tx transfer`, `cxl tx show`,
`cxl account show`, each a real process against a real node; then SIGTERM stops everything."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("node.app", reason="node/ is not importable yet: the localnet has nothing to run")

pytestmark = pytest.mark.slow

CXL = [sys.executable, "-m", "cli.main"]
ROOT = Path(__file__).resolve().parents[2]


def cxl(*args, check=True, timeout=60) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("CXL_NODE", None)
    r = subprocess.run([*CXL, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"cxl {' '.join(map(str, args))} exited {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base_port(n: int = 1) -> int:
    """A base port whose P2P (base+k) and API (base+100+k) ports, k = 1..n, are free right now."""
    # below the ephemeral range (32768+), where outgoing connections could take our ports
    for base in range(21000 + (os.getpid() % 1000) * 10, 32500, 7):
        if all(_free(base + k) and _free(base + 100 + k) for k in range(1, n + 1)):
            return base
    raise RuntimeError("no free ports")


class Localnet:
    def __init__(self, directory: Path):
        self.proc = subprocess.Popen([*CXL, "localnet", "start", "--dir", str(directory), "--stop-timeout", "10"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                                     start_new_session=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                return False
            self.output.append(line)
            if text in line:
                return True
        return False

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=timeout)
        while (line := self.lines.get(timeout=5)) is not None:
            self.output.append(line)
        return rc


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie no one reaped would still answer kill(0): count it as exited
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def localnet_dir(tmp_path):
    base = free_base_port()
    d = tmp_path / "net"
    r = cxl("localnet", "init", "--validators", 1, "--dir", d, "--base-port", base, "--chain-id", "it-chain")
    assert "start it with" in r.stdout
    return d


def test_transfer_through_the_cli_against_a_localnet(localnet_dir, tmp_path):
    manifest = json.loads((localnet_dir / "localnet.json").read_text())
    (node,) = manifest["nodes"]
    org = manifest["orgs"][0]
    admin = org["keys"]["admin"]
    assert {"admin", "operator", "auditor"} <= set(org["keys"])
    for role in ("admin", "operator", "auditor"):
        assert json.loads(Path(org["keys"][role]["path"]).read_text())["encrypted"] is False
    recipient = json.loads(cxl("keys", "new", "bob", "--dir", tmp_path / "keys", "--unencrypted", "--json").stdout)

    net = Localnet(localnet_dir)
    try:
        assert net.wait_for("localnet running", 60), "".join(net.output) + _logs(manifest)
        run = json.loads((localnet_dir / "run.json").read_text())
        pids = [n["pid"] for n in run["nodes"]]
        assert pids and all(_alive(p) for p in pids)

        before = json.loads(cxl("account", "show", admin["address"], "--node", node["api"], "--json").stdout)
        r = cxl("tx", "transfer", "--key", admin["path"], "--to", recipient["address"], "--amount", 2500,
                "--node", node["api"], "--json")
        record = json.loads(r.stdout)
        assert record["status"] == "committed" and record["receipt"]["code"] == "ok"

        human = cxl("tx", "show", record["hash"], "--node", node["api"]).stdout
        assert f"committed in block {record['height']} (index {record['index']}): ok" in human
        shown = json.loads(cxl("tx", "show", record["hash"], "--node", node["api"], "--json").stdout)
        assert shown["hash"] == record["hash"] and shown["tx"]["type"] == "transfer"

        got = json.loads(cxl("account", "show", recipient["address"], "--node", node["api"], "--json").stdout)
        assert got["balance"] == 2500
        after = json.loads(cxl("account", "show", admin["address"], "--node", node["api"], "--json").stdout)
        assert after["balance"] == before["balance"] - 2500 and after["nonce"] == before["nonce"] + 1

        # a transaction that would fail is refused by the dry run, before it lands: no nonce used
        bad = cxl("tx", "transfer", "--key", admin["path"], "--to", recipient["address"],
                  "--amount", after["balance"] + 1, "--node", node["api"], check=False)
        assert bad.returncode == 1 and "not sent" in bad.stderr and "insufficient_funds" in bad.stderr
        # sent anyway (--force), its failed receipt is reported with its code and exits 1
        bad = cxl("tx", "transfer", "--key", admin["path"], "--to", recipient["address"],
                  "--amount", after["balance"] + 1, "--node", node["api"], "--force", check=False)
        assert bad.returncode == 1 and "insufficient_funds" in bad.stdout
        again = json.loads(cxl("account", "show", admin["address"], "--node", node["api"], "--json").stdout)
        assert again["nonce"] == after["nonce"] + 1, "only the forced one used a nonce"

        status = json.loads(cxl("status", "--node", node["api"], "--json").stdout)
        assert status["chain_id"] == "it-chain" and status["height"] >= 2
    finally:
        rc = net.stop()
    assert rc == 0, "".join(net.output)
    assert "localnet stopped" in "".join(net.output)
    assert not any(_alive(p) for p in pids)
    assert not (localnet_dir / "run.json").exists()


def test_start_reports_a_node_that_cannot_start(localnet_dir):
    manifest = json.loads((localnet_dir / "localnet.json").read_text())
    api_port = manifest["nodes"][0]["api_port"]
    with socket.socket() as blocker:  # the node's API port is taken by something that is not a node
        blocker.bind(("127.0.0.1", api_port))
        blocker.listen(1)
        r = subprocess.run([*CXL, "localnet", "start", "--dir", str(localnet_dir), "--timeout", "20"],
                           capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "node1 exited" in r.stderr or "no answer" in r.stderr
    assert "Traceback" not in r.stdout


def test_init_refuses_an_existing_network(localnet_dir):
    r = cxl("localnet", "init", "--validators", 1, "--dir", localnet_dir, check=False)
    assert r.returncode == 1 and "--force" in r.stderr


def test_four_validators_agree_on_a_transfer(tmp_path):
    d = tmp_path / "net4"
    cxl("localnet", "init", "--validators", 4, "--dir", d, "--base-port", free_base_port(4))
    manifest = json.loads((d / "localnet.json").read_text())
    assert [o["id"] for o in manifest["orgs"]] == ["org1", "org2", "org3", "org4"]
    sender = manifest["orgs"][0]["keys"]["operator"]
    to = manifest["orgs"][3]["keys"]["auditor"]["address"]  # auditors start unfunded
    net = Localnet(d)
    try:
        assert net.wait_for("localnet running", 60), "".join(net.output) + _logs(manifest)
        pids = [n["pid"] for n in json.loads((d / "run.json").read_text())["nodes"]]
        assert len(pids) == 4
        record = json.loads(cxl("tx", "transfer", "--key", sender["path"], "--to", to, "--amount", 77,
                                "--node", manifest["nodes"][2]["api"], "--json").stdout)
        assert record["receipt"]["code"] == "ok", record
        for node in manifest["nodes"]:  # every replica executes the block: wait for it, then ask it
            shown = json.loads(cxl("tx", "show", record["hash"], "--wait", 20, "--node", node["api"], "--json").stdout)
            assert shown["status"] == "committed" and shown["block_hash"] == record["block_hash"]
            acct = json.loads(cxl("account", "show", to, "--node", node["api"], "--json").stdout)
            assert acct["balance"] == 77, (node["name"], acct)
    finally:
        rc = net.stop()
    assert rc == 0, "".join(net.output)
    assert not any(_alive(p) for p in pids)


def _logs(manifest) -> str:
    out = []
    for n in manifest["nodes"]:
        for name in ("console.log", "node.log"):
            p = Path(n["home"]) / name
            if p.exists():
                out.append(f"--- {p}\n{p.read_text()[-3000:]}")
    return "\n".join(out)
