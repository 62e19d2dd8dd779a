"""Dry-run cost: `python scripts/bench_simulate.py [--requests N] [--batch N] [--pending N]`.

Starts one single-validator node in a temp dir (real LevelDB, real HTTP on a free port),
then times N sequential POST /v1/txs/simulate calls of `batch` transfers each, with the
sender holding `pending` transactions in the mempool (they are executed first in every
dry run). Prints requests/s and mean ms per request and per simulated transaction
(see docs/api.md, "POST /v1/txs/simulate").
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402

from genesis.schema import save as save_genesis  # noqa: E402
from genesis.testnet import make_testnet  # noqa: E402
from ledger.keystore import write_key  # noqa: E402
from ledger.tx import make_tx  # noqa: E402
from node.app import Node  # noqa: E402
from node.config import init_home, load_config  # noqa: E402


async def run(requests: int, batch: int, pending: int) -> dict:
    net = make_testnet(n_orgs=4, n_validators=1, chain_id="cxl-bench-sim")
    op, to = net.operators["org1"], net.operators["org2"].address
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        save_genesis(net.doc, d / "genesis.json")
        write_key(d / "validator.json", net.validators[0])
        init_home(d / "home", d / "genesis.json", d / "validator.json", api_port=1)
        node = Node(d / "home", config=dataclasses.replace(load_config(d / "home"), api_port=0))
        await node.start()
        try:
            for n in range(pending):  # held in the mempool: never proposed (the runner is not told)
                node.mempool.add(make_tx(op, net.doc["chain_id"], n, "transfer", {"to": to, "amount": 1}))
            body = {"txs": [base64.b64encode(make_tx(op, net.doc["chain_id"], pending + i, "transfer",
                                                     {"to": to, "amount": 1}).raw).decode() for i in range(batch)]}
            async with aiohttp.ClientSession() as s:
                url = node.api_url + "/v1/txs/simulate"
                start = time.perf_counter()
                for _ in range(requests):
                    async with s.post(url, json=body) as r:
                        out = await r.json()
                        assert r.status == 200 and all(x["ok"] for x in out["results"]), out
                elapsed = time.perf_counter() - start
        finally:
            await node.stop()
    return {"requests": requests, "batch": batch, "pending": pending, "seconds": round(elapsed, 3),
            "requests_per_s": round(requests / elapsed, 1), "ms_per_request": round(1000 * elapsed / requests, 2),
            "ms_per_simulated_tx": round(1000 * elapsed / (requests * (batch + pending)), 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--pending", type=int, default=0)
    a = p.parse_args()
    print(json.dumps(asyncio.run(run(a.requests, a.batch, a.pending))))


if __name__ == "__main__":
    main()
