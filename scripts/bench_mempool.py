#!/usr/bin/env python3
"""Benchmark the mempool's stateful admission (`Mempool.add`, no signature checks).

1. plain: N ready transfers from 20 senders into an empty pool;
2. eviction flood: a pool full of nonce-gapped transfers (40 parked senders), then N
   ready transfers from 40 other senders, each of which must evict gapped ones.

Best of --repeat runs; prints one JSON document, then one human line. Usage:

    .venv/bin/python scripts/bench_mempool.py [--txs 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ledger.crypto import Signer  # noqa: E402
from ledger.encoding import sha256  # noqa: E402
from ledger.tx import make_tx  # noqa: E402
from node.mempool import Mempool  # noqa: E402

TO = Signer(sha256(b"bench/to")).address


def signers(label: str, n: int) -> list[Signer]:
    return [Signer(sha256(b"bench/%s/%d" % (label.encode(), i))) for i in range(n)]


def run(txs: int, repeat: int) -> dict:
    plain_s, parked_s, fresh_s = signers("plain", 20), signers("parked", 40), signers("fresh", 40)
    members = {s.address: {"org": f"o{i % 4}", "role": "operator", "key": s.public_key}
               for i, s in enumerate(plain_s + parked_s + fresh_s)}

    def lookup(address):
        return members.get(address), 0

    per = txs // 20
    plain = [make_tx(s, "bench", n, "transfer", {"to": TO, "amount": 1}) for s in plain_s for n in range(per)]
    per = txs // 40
    gapped = [make_tx(s, "bench", n, "transfer", {"to": TO, "amount": 1}) for s in parked_s for n in range(1, per + 1)]
    ready = [make_tx(s, "bench", n, "transfer", {"to": TO, "amount": 1}) for s in fresh_s for n in range(per)]
    big = dict(max_txs=len(gapped), max_per_sender=10 * per, max_nonce_ahead=10 * per,
               max_org_bytes=2**40, max_sender_bytes=2**40)
    best_plain = best_flood = float("inf")
    evicted = 0
    for _ in range(repeat):
        mp = Mempool("bench", lookup, **{**big, "max_txs": 10 * len(plain)})
        t = time.perf_counter()
        for stx in plain:
            mp.add(stx)
        best_plain = min(best_plain, time.perf_counter() - t)
        mp = Mempool("bench", lookup, **big)
        for stx in gapped:
            mp.add(stx)
        t = time.perf_counter()
        for stx in ready:
            mp.add(stx)
        best_flood = min(best_flood, time.perf_counter() - t)
        evicted = mp.evicted
    return {"plain_txs": len(plain), "plain_us_per_tx": round(best_plain / len(plain) * 1e6, 2),
            "flood_txs": len(ready), "flood_gapped": len(gapped), "flood_evicted": evicted,
            "flood_us_per_tx": round(best_flood / len(ready) * 1e6, 2), "repeat": repeat}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--txs", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    out = run(args.txs, args.repeat)
    print(json.dumps(out))
    print(f"plain: {out['plain_us_per_tx']} us/tx; into a pool full of {out['flood_gapped']} gapped txs: "
          f"{out['flood_us_per_tx']} us/tx ({out['flood_evicted']} evicted)")


if __name__ == "__main__":
    main()
