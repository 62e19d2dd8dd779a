#!/usr/bin/env python3
"""Probe a node's client API while it is flooded with idle sockets and long polls.

Starts a single-validator node in its own process (default limits unless overridden),
measures `GET /v1/status` from a clean address (127.0.0.200) before and during a flood of
--idle silent connections and --polls long polls (`?wait=30` on unknown hashes) spread
over --addresses loopback addresses (127.0.1.x), and prints one JSON document with the
probe success rate and latency percentiles, and how the flood was answered.

    .venv/bin/python scripts/bench_api_flood.py [--idle 500] [--polls 600] [--addresses 20] [--probes 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from genesis.schema import save as save_genesis  # noqa: E402
from genesis.testnet import make_testnet  # noqa: E402
from ledger.keystore import write_key  # noqa: E402
from node.config import init_home  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def probe(port: int, timeout: float = 5.0) -> float | None:
    """Seconds for one GET /v1/status from 127.0.0.200, or None if it failed."""
    start = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.200", 0)), timeout)
        writer.write(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), timeout)
        writer.close()
    except (OSError, asyncio.TimeoutError):
        return None
    return time.perf_counter() - start if answer.startswith(b"HTTP/1.1 200") else None


async def probes(port: int, n: int) -> dict:
    times = [await probe(port) for _ in range(n)]
    ok = sorted(t for t in times if t is not None)

    def pct(p: float) -> float | None:
        return None if not ok else round(ok[min(len(ok) - 1, int(p * len(ok)))] * 1000, 2)

    return {"probes": n, "ok": len(ok), "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0)}


async def idle_socket(port: int, local: str):
    try:
        return await asyncio.open_connection("127.0.0.1", port, local_addr=(local, 0))
    except OSError:
        return None


async def long_poll(port: int, local: str, n: int) -> str:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(local, 0))
        writer.write(f"GET /v1/txs/{n:064x}?wait=30 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(), 40)
        writer.close()
    except (OSError, asyncio.TimeoutError) as exc:
        return type(exc).__name__
    return answer.split(b"\r\n", 1)[0].decode(errors="replace")[9:12] or "closed"


async def flood(port: int, args) -> dict:
    before = await probes(port, args.probes)
    addrs = [f"127.0.1.{1 + i}" for i in range(args.addresses)]
    idle = [await idle_socket(port, addrs[i % len(addrs)]) for i in range(args.idle)]
    polls = [asyncio.create_task(long_poll(port, addrs[i % len(addrs)], i)) for i in range(args.polls)]
    await asyncio.sleep(1.0)
    during = await probes(port, args.probes)
    outcomes: dict[str, int] = {}
    for result in await asyncio.gather(*polls):
        outcomes[result] = outcomes.get(result, 0) + 1
    for conn in idle:
        if conn is not None:
            conn[1].close()
    return {"before": before, "during_flood": during, "long_poll_answers": outcomes,
            "idle_sockets_opened": sum(c is not None for c in idle)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--idle", type=int, default=500)
    ap.add_argument("--polls", type=int, default=600)
    ap.add_argument("--addresses", type=int, default=20)
    ap.add_argument("--probes", type=int, default=100)
    args = ap.parse_args()
    net = make_testnet(n_validators=1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        save_genesis(net.doc, tmp / "genesis.json")
        write_key(tmp / "validator.json", net.validators[0])
        port = free_port()
        init_home(tmp / "home", tmp / "genesis.json", tmp / "validator.json", api_port=port, p2p_port=free_port())
        proc = subprocess.Popen([sys.executable, "-m", "node", str(tmp / "home")], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            json.loads(proc.stdout.readline())  # {"event": "started", ...}
            result = asyncio.run(flood(port, args))
        finally:
            proc.terminate()
            proc.wait(15)
    result["setup"] = vars(args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
