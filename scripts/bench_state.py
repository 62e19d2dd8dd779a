#!/usr/bin/env python3
"""Cost of the state tree per block, in this process, on a real LevelDB.

    scripts/bench_state.py                        # 100,000 accounts, 40 blocks of 500 transfers
    scripts/bench_state.py --accounts 20000 --blocks 20 --txs 2000

It fills a fresh LevelDB with `--accounts` balance entries (version 0 of the tree), then
commits `--blocks` blocks, each the write set of `--txs` transfers between random accounts
(sender nonce, sender and receiver balance: ~3 writes a transfer), exactly as a node does:
`apply_writes` (reads the touched nodes, hashes each once) and one synced WriteBatch with
the block's state writes, tree nodes and the prune deletes of `--keep`. `--cache-mb`
sets LevelDB's block cache (default: the store's, ledger/store/leveldb.py). It reports, per
block: the root computation time (median, p90), the commit (batch write) time, writes/s
of the tree alone, and the nodes and bytes a block adds; also the old running digest
H(root || H(sorted writes)) on the same write sets for comparison. Times are CPU time of
this process (time.process_time), so other load on a shared machine inflates them less.
Prints one JSON document and one human line.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_VENV_PY = ROOT / ".venv" / "bin" / "python"
if _VENV_PY.exists() and Path(sys.prefix).resolve() != (ROOT / ".venv").resolve() \
        and not os.environ.get("CXL_BENCH_NO_REEXEC"):
    os.environ["CXL_BENCH_NO_REEXEC"] = "1"
    os.execv(str(_VENV_PY), [str(_VENV_PY), str(Path(__file__).resolve()), *sys.argv[1:]])

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, str(ROOT))

from ledger.encoding import encode, sha256  # noqa: E402
from ledger.statetree import PREFIX_NODE, apply_writes, prune_puts  # noqa: E402
from ledger.store.leveldb import LevelDBStore  # noqa: E402


def block_writes(rng: random.Random, accounts: int, txs: int, height: int) -> dict[bytes, bytes]:
    writes = {}
    for _ in range(txs):
        a, b = rng.randrange(accounts), rng.randrange(accounts)
        writes[b"nonce/cx%038d" % a] = encode(height)
        writes[b"bal/cx%038d" % a] = encode(10**12 - height)
        writes[b"bal/cx%038d" % b] = encode(10**12 + height)
    return writes


def old_digest(root: bytes, writes: dict) -> bytes:
    return sha256(root + sha256(encode([[k, writes[k]] for k in sorted(writes)])))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--blocks", type=int, default=40)
    ap.add_argument("--txs", type=int, default=500, help="transfers per block")
    ap.add_argument("--keep", type=int, default=256, help="state versions kept (pruning window)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache-mb", type=int, default=None, help="LevelDB block cache in MiB (default: the store's)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="cxl-bench-state-") as tmp:
        extra = {} if args.cache_mb is None else {"cache_bytes": args.cache_mb * 1024 * 1024}
        store = LevelDBStore(Path(tmp) / "db", **extra)
        t = time.process_time()
        genesis = {b"bal/cx%038d" % i: encode(10**12) for i in range(args.accounts)}
        up = apply_writes(store, 0, genesis)
        store.write({**{b"s/" + k: v for k, v in genesis.items()}, **up.puts})
        genesis_s = time.process_time() - t
        root_ms, commit_ms, digest_ms, writes_n, nodes_n, bytes_n = [], [], [], [], [], []
        for h in range(1, args.blocks + 1):
            writes = block_writes(rng, args.accounts, args.txs, h)
            t = time.process_time()
            up = apply_writes(store, h, writes)
            t1 = time.process_time()
            puts = {b"s/" + k: v for k, v in writes.items()}
            puts.update(up.puts)
            puts.update(prune_puts(store, h, args.keep, pending=up.puts))
            store.write(puts, sync=True)
            t2 = time.process_time()
            old_digest(up.root, writes)
            t3 = time.process_time()
            root_ms.append((t1 - t) * 1000)
            commit_ms.append((t2 - t1) * 1000)
            digest_ms.append((t3 - t2) * 1000)
            writes_n.append(len(writes))
            new_nodes = [k for k in up.puts if k.startswith(PREFIX_NODE)]
            nodes_n.append(len(new_nodes))
            bytes_n.append(sum(len(k) + len(up.puts[k]) for k in new_nodes))
        store.close()
    q = statistics.quantiles(root_ms, n=10)
    out = {
        "accounts": args.accounts, "cache_mb": args.cache_mb, "blocks": args.blocks,
        "txs_per_block": args.txs, "keep": args.keep,
        "genesis_tree_s": round(genesis_s, 2),
        "writes_per_block": round(statistics.mean(writes_n)),
        "root_ms_median": round(statistics.median(root_ms), 1), "root_ms_p90": round(q[-1], 1),
        "commit_ms_median": round(statistics.median(commit_ms), 1),
        "tree_writes_per_s": round(sum(writes_n) / (sum(root_ms) / 1000)),
        "old_digest_ms_median": round(statistics.median(digest_ms), 2),
        "new_nodes_per_block": round(statistics.mean(nodes_n)),
        "node_bytes_per_block": round(statistics.mean(bytes_n)),
        "loadavg": os.getloadavg(),
    }
    print(json.dumps(out, indent=2))
    print(f"{args.accounts} accounts, {args.txs}-tx blocks ({out['writes_per_block']} writes): root "
          f"{out['root_ms_median']} ms median ({out['root_ms_p90']} p90), commit {out['commit_ms_median']} ms, "
          f"{out['tree_writes_per_s']} tree writes/s, {out['new_nodes_per_block']} new nodes "
          f"({out['node_bytes_per_block'] // 1024} KiB) a block; old digest {out['old_digest_ms_median']} ms")


if __name__ == "__main__":
    main()
