"""A localnet of real validator processes on 127.0.0.1, for fault tests and the benchmark.

Each validator is its own OS process, started the way an operator starts one
(``python -m cli.main node start --home HOME``), in its own session so that signals
reach only it. The harness can start, stop (SIGTERM), kill (SIGKILL), pause (SIGSTOP),
resume (SIGCONT) and restart any of them, wipe a node's data directory (its keys and
config stay), and talk to every node's client API with the standard library only.

    net = LocalNet(tmp_dir, n=4, params={"view_timeout_ms": 1000})
    try:
        net.start_all(); net.wait_ready()
        ...
    finally:
        net.close()          # SIGKILL whatever is still running, always

`Workload` sends signed transfers from the localnet's funded keys (admins and
operators), one in flight per sender, and retries the *same* signed transaction on
another node until it is committed, as a careful client would: a transaction counts as
acknowledged only once a node answered that it is committed.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from genesis.localnet import create_localnet, save_manifest  # noqa: E402
from genesis.schema import genesis_hash, load as load_genesis, save as save_genesis, validate  # noqa: E402
from ledger.keystore import load_key  # noqa: E402
from ledger.tx import make_tx  # noqa: E402

PORT_LOW, PORT_HIGH = 20000, 30000  # below the ephemeral range (32768+ on Linux)
CONSOLE_LOG = "console.log"


# -- ports ---------------------------------------------------------------------------------

def _free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_base_port(n: int, slot: int = 0) -> int:
    """A base port B whose P2P ports B+1..B+n, API ports B+101..B+100+n and metrics ports
    B+201..B+200+n (the node's default, API port + 100) are free now.
    Different `slot`s (test index) and processes (pid) start looking in different places."""
    span = PORT_HIGH - PORT_LOW - 300
    start = PORT_LOW + ((os.getpid() * 37 + slot * 211) % (span // 10)) * 10
    base = start
    for _ in range(span // 10):
        if all(_free(base + k) and _free(base + 100 + k) and _free(base + 200 + k) for k in range(1, n + 1)):
            return base
        base += 10
        if base > PORT_HIGH - 300:
            base = PORT_LOW
    raise RuntimeError("no free port range in 20000-30000")


# -- HTTP -------------------------------------------------------------------------------------

class ApiError(Exception):
    def __init__(self, status: int, body):
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


def http(method: str, url: str, body=None, timeout: float = 5.0):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            ctype = r.headers.get("Content-Type", "")
            return json.loads(raw) if "json" in ctype else raw.decode()
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        raise ApiError(exc.code, body) from None


# -- processes -----------------------------------------------------------------------------------

def proc_stat(pid: int) -> dict:
    """CPU seconds (user+system) and memory of a process from /proc (0s if it is gone)."""
    out = {"cpu_s": 0.0, "rss_kib": 0, "hwm_kib": 0}
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        out["cpu_s"] = (int(fields[11]) + int(fields[12])) / tick
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss_kib"] = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                out["hwm_kib"] = int(line.split()[1])
    except (OSError, IndexError, ValueError):
        pass
    return out


class LocalNet:
    def __init__(self, root: str | Path, n: int = 4, *, params: dict | None = None, slot: int = 0,
                 chain_id: str = "cxl-faults", config: dict | None = None, extra_members: list | None = None,
                 balance: int = 10**12):
        """`extra_members`: more funded operator keys (Signers) put into the genesis, spread
        over the organisations (the benchmark's senders)."""
        self.root = Path(root)
        self.n = n
        self.base_port = pick_base_port(n, slot)
        self.manifest = create_localnet(self.root, n, chain_id=chain_id, base_port=self.base_port)
        if params or extra_members:
            self._edit_genesis(params or {}, extra_members or [], balance)
        from node.config import init_home  # late: tests that only want ports need not import node
        for node in self.manifest["nodes"]:
            init_home(node["home"], self.manifest["genesis"], node["node_key"]["path"],
                      api_port=node["api_port"], p2p_port=node["p2p_port"], **(config or {}))
        save_manifest(self.root, self.manifest)
        self.chain_id = chain_id
        self.nodes = self.manifest["nodes"]
        self.homes = [Path(x["home"]) for x in self.nodes]
        self.apis = [x["api"] for x in self.nodes]
        # the metrics listener's default port: the API port + 100 (node.config.metrics_port_of)
        self.metrics_urls = [f"http://127.0.0.1:{x['api_port'] + 100}" for x in self.nodes]
        self.procs: list[subprocess.Popen | None] = [None] * n
        self.paused: set[int] = set()
        self.peak_hwm_kib = [0] * n

    def _edit_genesis(self, params: dict, extra_members: list, balance: int) -> None:
        path = Path(self.manifest["genesis"])
        doc, _ = load_genesis(path)
        doc["params"] = dict(doc.get("params", {}), **params)
        for k, signer in enumerate(extra_members):
            doc["orgs"][k % len(doc["orgs"])]["members"].append({"key": signer.public_key.hex(), "role": "operator"})
            doc["balances"].append({"address": signer.address, "amount": balance})
        doc = validate(doc)
        save_genesis(doc, path)
        self.manifest["genesis_hash"] = genesis_hash(doc).hex()

    # keys -----------------------------------------------------------------------------
    def funded_signers(self) -> list:
        """The localnet's funded keys (each org's admin and operator)."""
        return [load_key(org["keys"][role]["path"]) for org in self.manifest["orgs"] for role in ("admin", "operator")]

    # lifecycle ---------------------------------------------------------------------------
    def start(self, i: int) -> subprocess.Popen:
        assert self.procs[i] is None or self.procs[i].poll() is not None, f"node{i + 1} is running"
        home = self.homes[i]
        with open(home / CONSOLE_LOG, "ab") as out:
            p = subprocess.Popen([sys.executable, "-m", "cli.main", "node", "start", "--home", str(home)],
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                 start_new_session=True)
        self.procs[i] = p
        self.paused.discard(i)
        return p

    def start_all(self) -> None:
        for i in range(self.n):
            self.start(i)

    def alive(self, i: int) -> bool:
        p = self.procs[i]
        return p is not None and p.poll() is None

    def running(self) -> list[int]:
        """Nodes running and not paused."""
        return [i for i in range(self.n) if self.alive(i) and i not in self.paused]

    def _signal(self, i: int, sig: int) -> None:
        p = self.procs[i]
        if p is not None and p.poll() is None:
            self._note_memory(i)
            os.kill(p.pid, sig)

    def kill(self, i: int) -> None:
        """SIGKILL: no chance to flush anything (the store's synced writes must suffice)."""
        self._signal(i, signal.SIGKILL)
        if self.procs[i] is not None:
            self.procs[i].wait(10)
        self.paused.discard(i)

    def terminate(self, i: int, grace: float = 10) -> None:
        self._signal(i, signal.SIGTERM)
        p = self.procs[i]
        if p is not None:
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.paused.discard(i)

    def pause(self, i: int) -> None:
        self._signal(i, signal.SIGSTOP)
        self.paused.add(i)

    def resume(self, i: int) -> None:
        self._signal(i, signal.SIGCONT)
        self.paused.discard(i)

    def restart(self, i: int) -> None:
        if self.alive(i):
            self.kill(i)
        self.start(i)

    def wipe_data(self, i: int) -> None:
        """Delete node i's chain data (LevelDB: blocks, state, consensus WAL); keys and config stay."""
        assert not self.alive(i), "stop the node before wiping its data"
        data = self.homes[i] / "data"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir()

    def close(self) -> None:
        for i, p in enumerate(self.procs):
            if p is not None and p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGCONT)
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    pass

    def _note_memory(self, i: int) -> None:
        p = self.procs[i]
        if p is not None:
            self.peak_hwm_kib[i] = max(self.peak_hwm_kib[i], proc_stat(p.pid)["hwm_kib"])

    def pid(self, i: int) -> int | None:
        p = self.procs[i]
        return None if p is None else p.pid

    # API ------------------------------------------------------------------------------------
    def get(self, i: int, path: str, timeout: float = 5.0):
        return http("GET", self.apis[i] + path, timeout=timeout)

    def metrics(self, i: int, timeout: float = 5.0) -> str:
        """Node i's Prometheus text, from its metrics listener."""
        return http("GET", self.metrics_urls[i] + "/metrics", timeout=timeout)

    def post(self, i: int, path: str, body, timeout: float = 5.0):
        return http("POST", self.apis[i] + path, body, timeout=timeout)

    def status(self, i: int, timeout: float = 2.0) -> dict | None:
        try:
            return self.get(i, "/v1/status", timeout=timeout)
        except (ApiError, OSError):
            return None

    def wait_ready(self, nodes: list[int] | None = None, timeout: float = 60) -> None:
        nodes = list(range(self.n)) if nodes is None else nodes
        deadline = time.monotonic() + timeout
        waiting = set(nodes)
        while waiting:
            for i in list(waiting):
                if not self.alive(i):
                    raise AssertionError(f"node{i + 1} exited with {self.procs[i].returncode}:\n{self.log_tail(i)}")
                if self.status(i, timeout=1) is not None:
                    waiting.discard(i)
            if waiting and time.monotonic() > deadline:
                raise AssertionError(f"nodes {sorted(waiting)} did not answer within {timeout}s\n"
                                     + "\n".join(self.log_tail(i) for i in waiting))
            if waiting:
                time.sleep(0.1)

    def heights(self, nodes: list[int] | None = None) -> dict[int, int | None]:
        nodes = self.running() if nodes is None else nodes
        return {i: (self.status(i) or {}).get("height") for i in nodes}

    def wait_height(self, height: int, nodes: list[int] | None = None, timeout: float = 30) -> None:
        nodes = self.running() if nodes is None else nodes
        deadline = time.monotonic() + timeout
        while True:
            hs = self.heights(nodes)
            if all(h is not None and h >= height for h in hs.values()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"height {height} not reached in {timeout}s: {hs}\n{self.diagnose()}")
            time.sleep(0.1)

    def submit(self, i: int, raws: list[bytes], timeout: float = 5.0) -> list[dict]:
        body = {"txs": [base64.b64encode(r).decode() for r in raws]}
        return self.post(i, "/v1/txs", body, timeout=timeout)["results"]

    def tx(self, i: int, tx_hash: str, wait: float = 0, timeout: float = 5.0) -> dict | None:
        q = f"?wait={wait:g}" if wait else ""
        try:
            return self.get(i, f"/v1/txs/{tx_hash}{q}", timeout=timeout + wait)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    # diagnostics -----------------------------------------------------------------------------
    def log_tail(self, i: int, lines: int = 25) -> str:
        out = []
        for name in (CONSOLE_LOG, "node.log"):
            p = self.homes[i] / name
            if p.exists():
                text = p.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- node{i + 1} {name}\n" + "\n".join(text))
        return "\n".join(out)

    def diagnose(self) -> str:
        rows = []
        for i in range(self.n):
            st = self.status(i, timeout=1) if self.alive(i) and i not in self.paused else None
            state = "paused" if i in self.paused else ("up" if self.alive(i) else "down")
            if st:
                rows.append(f"node{i + 1} {state} height={st['height']} view={st['view']} "
                            f"mempool={st['mempool']} evidence={st['evidence']}")
            else:
                rows.append(f"node{i + 1} {state}")
        return "\n".join(rows)


# -- checks -------------------------------------------------------------------------------------------

def check_same_chain(net: LocalNet, nodes: list[int] | None = None, min_height: int = 0,
                     timeout: float = 30) -> int:
    """Wait until the nodes agree on a common height >= min_height, then assert that they
    report the identical block (hash, header, so state root) at every height 1..H.
    Returns H."""
    nodes = net.running() if nodes is None else nodes
    deadline = time.monotonic() + timeout
    while True:
        hs = net.heights(nodes)
        if all(h is not None for h in hs.values()):
            target = max(min_height, max(hs.values()))
            if min(hs.values()) >= target:
                break
        if time.monotonic() > deadline:
            raise AssertionError(f"nodes did not converge within {timeout}s: {hs}\n{net.diagnose()}")
        time.sleep(0.1)
    top = min(hs.values())
    for h in range(1, top + 1):
        seen = {}
        for i in nodes:
            b = net.get(i, f"/v1/blocks/{h}")
            seen[i] = (b["hash"], b["header"]["state_root"], b["header"]["parent_hash"])
        assert len(set(seen.values())) == 1, f"fork at height {h}: {seen}"
    return top


def check_acked_everywhere(net: LocalNet, acked: dict[str, str], nodes: list[int] | None = None,
                           wait: float = 10) -> None:
    """Every acknowledged transaction (hash -> block hash it was committed in) is committed,
    in the same block, on every node."""
    nodes = net.running() if nodes is None else nodes
    for tx_hash, block_hash in acked.items():
        for i in nodes:
            rec = net.tx(i, tx_hash, wait=wait)
            assert rec is not None and rec["status"] == "committed", \
                f"acknowledged tx {tx_hash} is not committed on node{i + 1}: {rec}\n{net.diagnose()}"
            assert rec["block_hash"] == block_hash, \
                f"tx {tx_hash} is in block {rec['block_hash']} on node{i + 1}, acknowledged in {block_hash}"


def check_same_view(net: LocalNet, nodes: list[int] | None = None, timeout: float = 10) -> int:
    """A node that came back must rejoin the others' view (take part), not only follow the
    chain by fetching blocks. Returns the view."""
    nodes = net.running() if nodes is None else nodes
    deadline = time.monotonic() + timeout
    while True:
        views = {i: (net.status(i) or {}).get("view") for i in nodes}
        if len(set(views.values())) == 1 and None not in views.values():
            return views[nodes[0]]
        if time.monotonic() > deadline:
            raise AssertionError(f"nodes are in different views: {views}\n{net.diagnose()}")
        time.sleep(0.2)


def check_no_evidence(net: LocalNet, nodes: list[int] | None = None) -> None:
    nodes = net.running() if nodes is None else nodes
    for i in nodes:
        st = net.status(i)
        assert st is not None, f"node{i + 1} does not answer"
        assert st["evidence"] == 0, f"node{i + 1} reports {st['evidence']} evidence record(s)\n{net.log_tail(i)}"


# -- load ----------------------------------------------------------------------------------------------

class Workload:
    """Transfers from every funded key, nonces tracked here, one in flight per sender."""

    def __init__(self, net: LocalNet, signers: list | None = None):
        self.net = net
        self.signers = signers or net.funded_signers()
        self.nonces = [0] * len(self.signers)
        self.acked: dict[str, str] = {}      # tx hash -> block hash, as the network reported it
        self._rr = 0

    def _next_tx(self, s: int):
        signer = self.signers[s]
        to = self.signers[(s + 1) % len(self.signers)].address
        stx = make_tx(signer, self.net.chain_id, self.nonces[s], "transfer", {"to": to, "amount": 1})
        self.nonces[s] += 1
        return stx

    def _send(self, stx, candidates: list[int]) -> int | None:
        """Post to the next candidate that takes it; the node index, or None."""
        for _ in range(len(candidates)):
            i = candidates[self._rr % len(candidates)]
            self._rr += 1
            try:
                (res,) = self.net.submit(i, [stx.raw], timeout=3)
            except (ApiError, OSError):
                continue
            if res.get("status") in ("pending", "committed") or res.get("code") == "nonce_conflict":
                return i
        return None

    def submit_round(self, nodes: list[int] | None = None) -> list:
        """One new transaction per sender, spread over `nodes`; returns them (not yet acked)."""
        nodes = self.net.running() if nodes is None else nodes
        txs = [self._next_tx(s) for s in range(len(self.signers))]
        for stx in txs:
            self._send(stx, nodes)
        return txs

    def confirm(self, txs: list, timeout: float = 30) -> None:
        """Wait until each tx is committed (asking the running nodes in turn, resubmitting the
        same signed bytes where it is not even pending); record it as acknowledged."""
        deadline = time.monotonic() + timeout
        todo = list(txs)
        while todo:
            nodes = self.net.running()
            left = []
            for stx in todo:
                h = stx.hash.hex()
                i = nodes[self._rr % len(nodes)]
                self._rr += 1
                try:
                    rec = self.net.tx(i, h, wait=1.0, timeout=3)
                except (ApiError, OSError):
                    rec = None
                if rec is not None and rec["status"] == "committed":
                    self.acked[h] = rec["block_hash"]
                    continue
                if rec is None:  # not known there: lost with a killed node, or not gossiped yet
                    self._send(stx, nodes)
                left.append(stx)
            todo = left
            if todo and time.monotonic() > deadline:
                raise AssertionError(f"{len(todo)} transaction(s) not committed within {timeout}s, e.g. "
                                     f"{todo[0].hash.hex()}\n{self.net.diagnose()}")

    def run(self, rounds: int = 1, nodes: list[int] | None = None, timeout: float = 30) -> None:
        for _ in range(rounds):
            self.confirm(self.submit_round(nodes), timeout)
