#!/usr/bin/env python3
"""Benchmark state sync against full replay for a new node (issue 11 item 4).

Builds a LevelDB chain of --txs transfers in-process (scripts/bench_replay.py's builder:
pre-signed, 4 validators, fast certification), then times, each into a fresh LevelDB:

* full replay: a new Chain from genesis applying every certified block
  (`Chain.apply_certified`: certificate and signature checks, execution, commit);
* state sync: cutting the snapshot chunks at the head (the serving node's cost), then
  decoding, checking the order of and restoring every chunk (`ledger.snapshot`), checking
  the root against the head header's state root and writing state + tree (the new node's cost).
  No HTTP: the transfer of the chunks is not measured.

Prints one JSON document. Usage:

    .venv/bin/python scripts/bench_statesync.py [--txs 100000] [--block-txs 2000]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ledger import snapshot, statetree  # noqa: E402
from ledger.store.base import PREFIX_STATE  # noqa: E402
from ledger.store.leveldb import LevelDBStore  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_replay", ROOT / "scripts" / "bench_replay.py")
bench_replay = importlib.util.module_from_spec(_spec)
sys.modules["bench_replay"] = bench_replay  # its signing workers pickle functions by module name
_spec.loader.exec_module(bench_replay)

STATE_PREFIX = PREFIX_STATE


def full_replay(src: Path, dst: Path, net) -> dict:
    source, target = LevelDBStore(src / "data", create=False), LevelDBStore(dst)
    try:
        built, fresh = net.chain(source), net.chain(target)
        t0 = time.perf_counter()
        for h in range(1, built.height + 1):
            fresh.apply_certified(built.get_block(h), built.get_cert(h))
        seconds = time.perf_counter() - t0
        assert fresh.head.state_root == built.head.state_root
        return {"seconds": round(seconds, 3), "height": fresh.height}
    finally:
        source.close()
        target.close()


def state_sync(src: Path, dst: Path, net) -> dict:
    source, target = LevelDBStore(src / "data", create=False), LevelDBStore(dst)
    try:
        built = net.chain(source)
        h, want = built.height, built.head.state_root
        t0 = time.perf_counter()
        raws = [snapshot.encode_chunk(h, i, part)
                for i, part in enumerate(snapshot.chunk_leaves(statetree.iter_leaves(source, h)))]
        t_cut = time.perf_counter()
        leaves, after = {}, None
        for i, raw in enumerate(raws):
            part = snapshot.decode_chunk(raw, h, i)
            after = snapshot.check_chunk(part, i, after)
            leaves.update(part)
        restored = snapshot.restore(target, h, leaves, want)
        puts = dict(restored.tree_puts)
        puts.update({STATE_PREFIX + k: v for k, v in restored.state.items()})
        target.write(puts, sync=True)
        t_done = time.perf_counter()
        assert statetree.root_hash(target, h) == want
        return {"seconds": round(t_done - t0, 3), "serve_cut_s": round(t_cut - t0, 3),
                "client_restore_s": round(t_done - t_cut, 3), "height": h, "leaves": len(leaves),
                "chunks": len(raws), "bytes": sum(map(len, raws))}
    finally:
        source.close()
        target.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--txs", type=int, default=100_000)
    ap.add_argument("--block-txs", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cxl-bench-statesync-") as tmp:
        base = Path(tmp)
        built = bench_replay.build(base, args.txs, args.block_txs, args.workers)
        net = built["net"]
        out = {"txs": built["txs"], "blocks": built["blocks"],
               "state_sync": state_sync(base, base / "synced", net),
               "full_replay": full_replay(base, base / "replayed", net)}
    out["speedup"] = round(out["full_replay"]["seconds"] / max(out["state_sync"]["seconds"], 1e-9), 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
