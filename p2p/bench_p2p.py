"""Loopback throughput of one p2p session: consensus frames/s and gossiped txs/s.

    python -m p2p.bench_p2p [--frames 20000] [--frame-bytes 300] [--txs 200000] [--tx-bytes 250] [--tls]

Two PeerNetworks in one process (one event loop, so sender and receiver share a CPU);
numbers are end-to-end: from the first `send`/`gossip_txs` call until the receiving
inbox has everything. Queues are sized so nothing is dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import time

from p2p.testing import FAST_LIMITS, Cluster, wait_until


async def run(frames: int, frame_bytes: int, txs: int, tx_bytes: int, tls: bool) -> dict:
    limits = dataclasses.replace(FAST_LIMITS, max_queue_frames=10_000_000, max_queue_bytes=4 << 30,
                                 seen_capacity=max(100_000, 2 * txs))
    results: dict = {}
    async with Cluster.build(2, tls=tls, limits=limits) as cluster:
        a, b = cluster.nodes
        body = os.urandom(frame_bytes)

        start = time.perf_counter()
        for _ in range(frames):
            a.net.send(b.key, body)
        await wait_until(lambda: len(b.inbox.consensus) == frames, timeout=120, interval=0.001)
        elapsed = time.perf_counter() - start
        results["frames"] = frames
        results["frames_per_s"] = frames / elapsed
        results["frame_mb_per_s"] = frames * frame_bytes / elapsed / 1e6

        payloads = [i.to_bytes(8, "big") + os.urandom(tx_bytes - 8) for i in range(txs)]
        start = time.perf_counter()
        for i in range(0, txs, 1000):  # as a mempool would hand them over
            a.net.gossip_txs(payloads[i:i + 1000])
            await asyncio.sleep(0)
        await wait_until(lambda: sum(len(t) for _, t in b.inbox.txs) == txs, timeout=300, interval=0.001)
        elapsed = time.perf_counter() - start
        results["txs"] = txs
        results["txs_per_s"] = txs / elapsed
        results["tx_frames"] = len(b.inbox.txs)
        results["status"] = a.net.peer_status()[0]
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--frame-bytes", type=int, default=300)
    parser.add_argument("--txs", type=int, default=200_000)
    parser.add_argument("--tx-bytes", type=int, default=250)
    parser.add_argument("--tls", action="store_true")
    args = parser.parse_args(argv)
    r = asyncio.run(run(args.frames, args.frame_bytes, args.txs, args.tx_bytes, args.tls))
    mode = "tls" if args.tls else "plain"
    print(f"[{mode}] consensus: {r['frames']} frames of {args.frame_bytes} B: "
          f"{r['frames_per_s']:,.0f} frames/s ({r['frame_mb_per_s']:.1f} MB/s)")
    print(f"[{mode}] tx gossip: {r['txs']} txs of {args.tx_bytes} B in {r['tx_frames']} frames: "
          f"{r['txs_per_s']:,.0f} txs/s")
    s = r["status"]
    print(f"[{mode}] sender view: sent={s['sent']} dropped={s['dropped']} queued={s['queued']}")


if __name__ == "__main__":
    main()
