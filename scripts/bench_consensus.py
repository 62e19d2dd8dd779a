#!/usr/bin/env python3
"""What junk from one byzantine validator costs a replica, in this process (no network).

    scripts/bench_consensus.py [--commits 10000] [--signatures 27700]

* junk Commits: CPU seconds for one replica to take N Commits from one validator, each
  for another view and hash at its current height (issue 9 item 7);
* an expensive NewView: CPU seconds to check one frame carrying about S junk signatures
  (many ViewChanges, each with a prepared certificate of many Prepares), the way the
  node checks it before the core sees it (issue 14 item 4);
* NewView bytes for a 1.2 MiB and a 3 MiB block re-proposed from q prepared certificates
  (issue 9 item 3; the p2p frame limit is 4 MiB);
* event-loop stall: a node's runner (4-validator testnet, memory store) is handed
  `--frames` such NewViews through `Runner.on_consensus_bytes` while a 10 ms ticker runs
  on the same loop; reports the ticker's worst lateness and the time until all frames
  were dealt with (issue 14 item 4: 21 frames delayed a commit from 0.5 s to 37 s).

Prints one JSON document. Runs against whatever `consensus` is first on sys.path, so the
same script measures an older checkout (PYTHONPATH=/path/to/old/tree).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(ROOT))

from consensus.core import Replica  # noqa: E402
from consensus.events import MessageReceived  # noqa: E402
from consensus.messages import (  # noqa: E402
    Commit, PreparedCert, encode_message, decode_message, make_new_view,
    make_prepare, make_preprepare, make_view_change,
)
from consensus.state import ConsensusConfig  # noqa: E402
from ledger.crypto import Signer  # noqa: E402
from ledger.encoding import sha256  # noqa: E402

KEYS = [Signer(sha256(b"bench-key-%d" % i)) for i in range(4)]
VALS = tuple(k.public_key for k in KEYS)
CHAIN = "cxl-bench"


def check(msg) -> bool:
    """The node's check before the core: check_message if this tree has it."""
    try:
        from consensus.messages import MessageRefused, check_message
    except ImportError:
        from consensus.messages import verify_message
        return verify_message(msg, CHAIN, VALS)
    try:
        check_message(msg, CHAIN, VALS, sha256)
        return True
    except MessageRefused:
        return False


def junk_commits(count: int) -> dict:
    rep = Replica(CHAIN, KEYS[3], VALS, 1, ConsensusConfig(rotation_blocks=0))
    msgs = [MessageReceived(Commit(v, 1, sha256(b"junk%d" % v), VALS[1], b"\x00" * 64)) for v in range(1, count + 1)]
    t = time.process_time()
    for m in msgs:
        rep.on_event(m)
    return {"commits": count, "cpu_s": round(time.process_time() - t, 3),
            "kept": rep.commits.count() if hasattr(rep.commits, "count") else sum(map(len, rep.commits.values()))}


def heavy_frame(signatures: int, keys=KEYS) -> bytes:
    vals = tuple(k.public_key for k in keys)
    pp = make_preprepare(keys[0], CHAIN, 0, 5, sha256(b"b"), b"")
    votes = [make_prepare(k, CHAIN, 0, 5, pp.block_hash) for k in keys[1:4]]
    prepares = tuple(votes[i % 3] for i in range(1000))
    vcs = tuple(make_view_change(keys[i % 4], CHAIN, 1, 4, PreparedCert(pp, prepares))
                for i in range(max(1, signatures // 1002)))
    del vals
    return encode_message(make_new_view(keys[1], CHAIN, 1, 5, vcs, None))


async def _loop_stall(frames: int, signatures: int) -> dict:
    import asyncio
    from genesis.testnet import make_testnet
    from ledger import accounts
    from ledger.store.memory import MemoryStore
    from node.mempool import Mempool
    from node.runner import Runner
    from node.transport import NullTransport

    net = make_testnet(n_validators=4, chain_id=CHAIN)
    chain = net.chain(MemoryStore())
    by_key = {s.public_key: s for s in net.validators}
    signers = [by_key[k] for k in chain.validator_keys]
    runner = Runner(chain, Mempool(chain.chain_id, lambda a: (True, accounts.next_nonce(chain.state(), a))),
                    signers[3], NullTransport())
    data = heavy_frame(signatures, signers)
    loop = asyncio.get_running_loop()
    worst = 0.0
    stop = False

    async def ticker():
        nonlocal worst
        while not stop:
            t = loop.time()
            await asyncio.sleep(0.01)
            worst = max(worst, loop.time() - t - 0.01)

    tick = loop.create_task(ticker())
    await asyncio.sleep(0.05)
    t0 = loop.time()
    for _ in range(frames):
        runner.on_consensus_bytes(signers[1].public_key, data)
        await asyncio.sleep(0)
    gate = getattr(runner, "_inbound_gate", None)
    while gate is not None and any(a.pending for a in gate().accounts.values()):
        await asyncio.sleep(0.01)
    took = loop.time() - t0
    stop = True
    await tick
    return {"frames": frames, "frame_bytes": len(data), "worst_loop_lag_s": round(worst, 3),
            "all_handled_s": round(took, 3), "queued_for_the_core": runner.queue.qsize()}


def loop_stall(frames: int, signatures: int) -> dict:
    import asyncio
    return asyncio.run(_loop_stall(frames, signatures))


def heavy_new_view(signatures: int) -> dict:
    # validly signed throughout (the same three Prepares repeated), so a check that
    # verifies every signature before looking at the shape pays for all of them
    pp = make_preprepare(KEYS[0], CHAIN, 0, 5, sha256(b"b"), b"")
    per_vc = 1000  # prepares per prepared certificate (the decoder's limit is 1024)
    votes = [make_prepare(k, CHAIN, 0, 5, pp.block_hash) for k in KEYS[1:]]
    prepares = tuple(votes[i % 3] for i in range(per_vc))
    vcs = tuple(make_view_change(KEYS[i % 4], CHAIN, 1, 4, PreparedCert(pp, prepares))
                for i in range(max(1, signatures // (per_vc + 2))))
    nv = make_new_view(KEYS[1], CHAIN, 1, 5, vcs, None)
    data = encode_message(nv)
    t = time.process_time()
    ok = check(decode_message(data))
    return {"frame_bytes": len(data), "signatures": sum(2 + len(v.prepared.prepares) for v in vcs) + 1,
            "accepted": ok, "cpu_s": round(time.process_time() - t, 3)}


def new_view_bytes(block_bytes: int) -> int:
    big = bytes(block_bytes)
    h = sha256(big)
    pp = make_preprepare(KEYS[0], CHAIN, 0, 5, h, big)
    cert = PreparedCert(pp, tuple(make_prepare(k, CHAIN, 0, 5, h) for k in KEYS[1:3]))
    vcs = tuple(make_view_change(k, CHAIN, 1, 4, cert) for k in KEYS[:3])
    return len(encode_message(make_new_view(KEYS[1], CHAIN, 1, 5, vcs, make_preprepare(KEYS[1], CHAIN, 1, 5, h, big))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=10_000)
    ap.add_argument("--signatures", type=int, default=27_700)
    ap.add_argument("--frames", type=int, default=21)
    args = ap.parse_args()
    out = {
        "consensus": str(Path(sys.modules["consensus.core"].__file__).parent),
        "junk_commits": junk_commits(args.commits),
        "heavy_new_view": heavy_new_view(args.signatures),
        "new_view_bytes": {"1.2MiB": new_view_bytes(int(1.2 * 1024 * 1024)), "3MiB": new_view_bytes(3 * 1024 * 1024)},
        "loop_stall": loop_stall(args.frames, args.signatures),
        "loadavg_1m": os.getloadavg()[0],
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
