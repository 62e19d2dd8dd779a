"""A localnet whose validators each run in their own Linux network namespace, for tests
of partitions, packet loss, delay and clock skew (issue 13). Needs root, iproute2 (`ip
netns`) and /dev/net/tun; `netns_unavailable()` says why not, for a skip.

Topology (all inside namespaces this harness creates; names carry the pid, so parallel
runs never collide; addresses are private to the namespaces, so they may repeat):

    cxl<pid>n1 (node 1)    eth0 10.77.0.1/24     \
    ...                                           > tap devices of one netswitch.py process
    cxl<pid>h  (hub)       eth0 10.77.0.254/24   /

The links are tap devices served by a user-space switch (netswitch.py) rather than veth +
bridge + `tc netem`, because this machine's kernel has no sch_netem (and no iptables
binary): the switch delays and drops frames between nodes and makes partitions (frames
vanish silently, as with iptables DROP: no RST, no ICMP), so TCP sees real loss, real
RTTs and real retransmission timeouts. The test process talks to the nodes from the hub
namespace: each HTTP call enters it on the calling thread (setns is per thread) and
leaves it after.

    net = NetnsNet(tmp_dir, 4, params=..., spare_hosts=1)
    try:
        full = net.add_host_node("full", key, role="full")   # node 5, at 10.77.0.5
        net.start_all(); net.wait_ready()
        net.partition([0, 1], [2, 3]); ...; net.heal()
        net.shape(delay_ms=100, loss_pct=5)
    finally:
        net.close()          # kills the nodes and the switch, deletes every namespace
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from netharness import CONSOLE_LOG, ROOT, ApiError, LocalNet, http

SUBNET = "10.77.0"
HUB_ADDR = f"{SUBNET}.254"
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _run(*args: str) -> None:
    res = subprocess.run(list(args), capture_output=True, text=True, timeout=20)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")


def netns_unavailable() -> str | None:
    """Why the netns tests cannot run here (None when they can)."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespace tests need root (ip netns, /dev/net/tun); run the suite as root to include them"
    if shutil.which("ip") is None:
        return "`ip` not found: install iproute2 (apt-get install iproute2)"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing: the tap-device switch needs the tun driver"
    probe = f"cxl{os.getpid()}probe"
    try:
        _run("ip", "netns", "add", probe)
        try:
            _run("ip", "-n", probe, "tuntap", "add", "dev", "t0", "mode", "tap")
        finally:
            _run("ip", "netns", "del", probe)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot create a network namespace with a tap device here: {exc}"
    return None


@contextlib.contextmanager
def entered(namespace: str):
    """Run the body with the calling thread in `namespace` (sockets made there stay there)."""
    with open(f"/run/netns/{namespace}") as target, open("/proc/thread-self/ns/net") as home:
        if _libc.setns(target.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {namespace} failed")
        try:
            yield
        finally:
            if _libc.setns(home.fileno(), CLONE_NEWNET) != 0:  # pragma: no cover - would be a kernel bug
                raise OSError(ctypes.get_errno(), "setns back to the test's namespace failed")


class Fabric:
    """The namespaces and the switch process (netswitch.py) that connects them."""

    def __init__(self, n: int):
        tag = f"cxl{os.getpid()}"
        self.hub = f"{tag}h"
        self.nodes = [f"{tag}n{i + 1}" for i in range(n)]
        self.created: list[str] = []
        self.switch: subprocess.Popen | None = None
        self._lock = threading.Lock()

    @staticmethod
    def addr(i: int) -> str:
        return f"{SUBNET}.{i + 1}"

    def build(self) -> None:
        try:
            self._build()
        except BaseException:
            self.destroy()
            raise

    def _build(self) -> None:
        for ns in (*self.nodes, self.hub):
            _run("ip", "netns", "add", ns)
            self.created.append(ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        self.switch = subprocess.Popen([sys.executable, str(Path(__file__).with_name("netswitch.py")),
                                        *self.nodes, self.hub],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        ready = self.switch.stdout.readline().strip()
        if ready != "ready":
            raise RuntimeError(f"netswitch did not start (said {ready!r}, exit {self.switch.poll()})")
        for ns, addr in [*zip(self.nodes, map(self.addr, range(len(self.nodes)))), (self.hub, HUB_ADDR)]:
            _run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            _run("ip", "-n", ns, "link", "set", "eth0", "up")

    def _command(self, **msg) -> None:
        with self._lock:
            assert self.switch is not None and self.switch.poll() is None, "netswitch is not running"
            self.switch.stdin.write(json.dumps(msg) + "\n")
            answer = self.switch.stdout.readline().strip()
        if answer != "ok":
            raise RuntimeError(f"netswitch refused {msg}: {answer}")

    def shape(self, delay_ms: int = 0, jitter_ms: int = 0, loss_pct: float = 0) -> None:
        """Between nodes: one-way `delay_ms` (± jitter) and `loss_pct` random loss per frame."""
        self._command(cmd="shape", delay_ms=delay_ms, jitter_ms=jitter_ms, loss=loss_pct / 100)

    def partition(self, *groups: list[int]) -> None:
        """Nodes in different groups lose every frame to each other; the hub (the test's
        client) still reaches everyone."""
        self._command(cmd="partition", groups=[list(g) for g in groups])

    def heal(self) -> None:
        self._command(cmd="heal")

    def destroy(self) -> None:
        if self.switch is not None:
            self.switch.kill()
            self.switch.wait(10)
            self.switch = None
        for ns in reversed(self.created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        self.created.clear()


class NetnsNet(LocalNet):
    """`LocalNet` with validator i in namespace `fabric.nodes[i]` at 10.77.0.(i+1).

    `spare_hosts` more namespaces (10.77.0.(n+1), ...) wait for nodes that are not in the
    genesis, added with `add_host_node` (a full node, a joining organisation's node); they
    get the next index, so `start`, `get`, `partition` and the rest take them like the
    validators. `config` is more settings for the validators' config.json."""

    def __init__(self, root, n: int = 4, *, params: dict | None = None, clock_offsets_ms: dict | None = None,
                 spare_hosts: int = 0, config: dict | None = None, **kwargs):
        self.fabric = Fabric(n + spare_hosts)
        self.clock_offsets_ms = dict(clock_offsets_ms or {})
        # LocalNet rewrites the genesis (and so our addresses, in _edit_genesis) only when
        # it has parameters to set: always give it one
        params = dict(params or {}) or {"view_timeout_ms": 2000}
        self.fabric.build()
        try:
            super().__init__(root, n, params=params, config={**self.LISTEN_ALL, **(config or {})}, **kwargs)
        except BaseException:
            self.fabric.destroy()
            raise
        self.apis = [node["api"] for node in self.nodes]
        # the metrics listener's default port: the API port + 100, on the node's own address
        self.metrics_bases = [f"http://{Fabric.addr(i)}:{node['api_port'] + 100}" for i, node in enumerate(self.nodes)]

    # listen on every address of the node's own namespace (it has only eth0 and lo)
    LISTEN_ALL = {"p2p_host": "0.0.0.0", "api_host": "0.0.0.0", "metrics_host": "0.0.0.0"}

    def add_host_node(self, name: str, signer, **settings) -> int:
        """A node that is not in the genesis (settings e.g. role="full"), in the next spare
        namespace; returns its index. Ports may repeat the validators': each namespace has
        its own."""
        from ledger.keystore import write_key
        from node.config import init_home

        i = self.n
        if i >= len(self.fabric.nodes):
            raise AssertionError(f"no spare namespace for {name}: all {i} hosts are taken (more spare_hosts)")
        key_path = self.root / f"{name}-key.json"
        write_key(key_path, signer)
        home = self.root / name
        p2p_port, api_port = self.base_port + 1, self.base_port + 101
        init_home(home, self.manifest["genesis"], key_path, api_port=api_port, p2p_port=p2p_port,
                  **{**self.LISTEN_ALL, **settings})
        addr = Fabric.addr(i)
        node = {"name": name, "home": str(home), "api_port": api_port, "p2p_port": p2p_port,
                "api": f"http://{addr}:{api_port}", "p2p": f"http://{addr}:{p2p_port}",
                "node_key": {"public_key": signer.public_key.hex(), "path": str(key_path)}}
        self.nodes.append(node)  # self.nodes is the manifest's list: one append for both
        self.homes.append(home)
        self.apis.append(node["api"])
        self.metrics_urls.append("")
        self.metrics_bases.append(f"http://{addr}:{api_port + 100}")
        self.procs.append(None)
        self.peak_hwm_kib.append(0)
        self.n += 1
        return i

    def _edit_genesis(self, params: dict, extra_members: list, balance: int) -> None:
        from genesis.schema import load as load_genesis, save as save_genesis

        path = Path(self.manifest["genesis"])
        doc, _ = load_genesis(path)
        for i, (v, node) in enumerate(zip(doc["validators"], self.manifest["nodes"])):
            v["p2p"] = node["p2p"] = f"http://{Fabric.addr(i)}:{node['p2p_port']}"
            v["api"] = node["api"] = f"http://{Fabric.addr(i)}:{node['api_port']}"
        save_genesis(doc, path)
        super()._edit_genesis(params, extra_members, balance)

    def start(self, i: int) -> subprocess.Popen:
        assert self.procs[i] is None or self.procs[i].poll() is not None, f"node{i + 1} is running"
        env = dict(os.environ)
        env.pop("CXL_TEST_CLOCK_OFFSET_MS", None)
        if i in self.clock_offsets_ms:
            env["CXL_TEST_CLOCK_OFFSET_MS"] = str(self.clock_offsets_ms[i])  # test-only clock skew
        with open(self.homes[i] / CONSOLE_LOG, "ab") as out:
            # `ip netns exec` execs the command: the Popen pid is the node's, signals reach it
            p = subprocess.Popen(["ip", "netns", "exec", self.fabric.nodes[i], sys.executable, "-m", "cli.main",
                                  "node", "start", "--home", str(self.homes[i])],
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                 start_new_session=True, env=env)
        self.procs[i] = p
        self.paused.discard(i)
        return p

    # the client API, from the hub namespace
    def get(self, i: int, path: str, timeout: float = 5.0):
        with entered(self.fabric.hub):
            return http("GET", self.apis[i] + path, timeout=timeout)

    def post(self, i: int, path: str, body, timeout: float = 5.0):
        with entered(self.fabric.hub):
            return http("POST", self.apis[i] + path, body, timeout=timeout)

    def metric(self, i: int, name: str) -> float:
        with entered(self.fabric.hub):
            text = http("GET", self.metrics_bases[i] + "/metrics", timeout=5.0)
        m = re.search(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
        if m is None:
            raise AssertionError(f"metric {name} not found on node{i + 1}")
        return float(m.group(1))

    # faults
    def partition(self, *groups: list[int]) -> None:
        self.fabric.partition(*groups)

    def heal(self) -> None:
        self.fabric.heal()

    def shape(self, delay_ms: int = 0, jitter_ms: int = 0, loss_pct: float = 0) -> None:
        self.fabric.shape(delay_ms, jitter_ms, loss_pct)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.fabric.destroy()


class OpenLoad:
    """Open-loop load: `rate` signed transfers per second, whatever the network does, from
    pre-signed per-sender sequences (sender s always posts to the same node, `nodes`[s mod
    len(nodes)] (default: every node), so its nonces arrive in order). Posts run on a small
    thread pool so a slow answer (loss, delay) does not slow the offered rate; counts what
    was offered and what nodes refused."""

    BATCH_EVERY_S = 0.1

    def __init__(self, net: LocalNet, signers: list, rate: int, seconds: float, nodes: list[int] | None = None):
        from ledger.tx import make_tx

        self.net = net
        self.nodes = list(range(net.n)) if nodes is None else list(nodes)
        self.rate = rate
        self.per_batch = max(1, round(rate * self.BATCH_EVERY_S))
        batches = int(seconds / self.BATCH_EVERY_S) + 1
        total = self.per_batch * batches
        per_sender = -(-total // len(signers))
        self.queues: list[list[bytes]] = []
        for s, signer in enumerate(signers):
            to = signers[(s + 1) % len(signers)].address
            self.queues.append([make_tx(signer, net.chain_id, k, "transfer", {"to": to, "amount": 1}).raw
                                for k in range(per_sender)])
        self.offered = 0
        self.refused = 0
        self.failed_posts = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(8, thread_name_prefix="cxl-load")
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cxl-open-load", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self) -> None:
        n_senders, rr = len(self.queues), 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            by_node: dict[int, list[bytes]] = {}
            for _ in range(self.per_batch):
                s = rr % n_senders
                k = rr // n_senders
                rr += 1
                if k >= len(self.queues[s]):
                    return  # pre-signed transactions used up
                by_node.setdefault(self.nodes[s % len(self.nodes)], []).append(self.queues[s][k])
            for i, raws in by_node.items():
                self._pool.submit(self._post, i, raws)
            self.offered += self.per_batch
            next_at += self.BATCH_EVERY_S
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _post(self, i: int, raws: list[bytes]) -> None:
        body = {"txs": [base64.b64encode(r).decode() for r in raws]}
        try:
            results = self.net.post(i, "/v1/txs", body, timeout=10)["results"]
        except (ApiError, OSError):
            with self._lock:
                self.failed_posts += 1
            return
        bad = sum(1 for r in results if r.get("status") not in ("pending", "committed"))
        if bad:
            with self._lock:
                self.refused += bad
