"""Throughput of market transactions beside plain transfers, through real blocks.

Each measured block goes through `chain.build_block` (proposer: execute, seal),
`chain.validate_block` (replica: re-execute, compare roots, signatures checked once
here) and `chain.commit_block` on a MemoryStore. Transactions are signed before the clock
starts. The market mix is, per lease: lease_open, lease_accept, usage_report,
usage_confirm, lease_settle (five transactions), spread over many leases per block.

    python -m ledger.market.bench [--leases 2000] [--block 500]
"""

from __future__ import annotations

import argparse
import json
import time

from genesis.testnet import make_testnet
from ledger.encoding import sha256
from ledger.market.common import HOUR_MS
from ledger.market.harness import listing_payload
from ledger.market.sealing import seal_access
from ledger.tx import make_tx


class _Runner:
    def __init__(self, net):
        self.net = net
        self.chain = net.chain()
        self.cert = None
        self.time_ms = net.doc["genesis_time_ms"]
        self.nonces: dict[str, int] = {}
        self.elapsed = 0.0
        self.txs = 0

    def tx(self, signer, kind, payload):
        n = self.nonces.get(signer.address, 0)
        self.nonces[signer.address] = n + 1
        return make_tx(signer, self.chain.chain_id, n, kind, payload)

    def run(self, txs, advance_ms=1000, measure=True):
        self.time_ms += advance_ms
        hashes = {t.hash for t in txs}
        t0 = time.perf_counter()
        blk, _ = self.chain.build_block(txs, time_ms=self.time_ms, view=0,
                                        proposer=self.net.validators[0].public_key, last_cert=self.cert,
                                        verified=hashes)
        result = self.chain.validate_block(blk)
        t1 = time.perf_counter()
        cert = self.net.certify(self.chain, blk)   # consensus work, not execution: not timed
        t2 = time.perf_counter()
        self.chain.commit_block(blk, cert, result)
        t3 = time.perf_counter()
        self.cert = cert
        bad = [r for r in result.receipts if not r.ok]
        if bad:
            raise SystemExit(f"unexpected receipt: {bad[0]}")
        if measure:
            self.elapsed += (t1 - t0) + (t3 - t2)
            self.txs += len(txs)
        return result


def _chunks(items, size):
    return [items[i:i + size] for i in range(0, len(items), size)]


def bench_market(leases: int, block: int) -> dict:
    net = make_testnet(n_orgs=4)
    r = _Runner(net)
    provider = net.operators["org1"]
    tenants = [net.operators[o] for o in ("org2", "org3", "org4")]
    r.run([r.tx(provider, "listing_create", listing_payload(units=leases, price=1000))], measure=False)
    sealed = seal_access(tenants[0].public_key, b"ssh tenant@host")
    digest = sha256(b"bench")
    phases = {
        "lease_open": [r.tx(tenants[i % 3], "lease_open", {"listing": 1, "units": 1, "hours": 2, "max_price": 1000})
                       for i in range(leases)],
        "lease_accept": [r.tx(provider, "lease_accept", {"lease": i + 1, "attestation_digest": digest,
                                                         "sealed_access": sealed}) for i in range(leases)],
        "usage_report": [r.tx(provider, "usage_report", {"lease": i + 1, "period": 0, "unit_hours": 1,
                                                         "uptime_permille": 995}) for i in range(leases)],
        "usage_confirm": [r.tx(tenants[i % 3], "usage_confirm", {"lease": i + 1, "period": 0}) for i in range(leases)],
        "lease_settle": [r.tx(tenants[i % 3], "lease_settle", {"lease": i + 1}) for i in range(leases)],
    }
    per_phase = {}
    for name, txs in phases.items():
        before_t, before_n = r.elapsed, r.txs
        for i, chunk in enumerate(_chunks(txs, block)):
            # the report phase starts an hour later, when period 0 is over
            r.run(chunk, advance_ms=HOUR_MS if (name == "usage_report" and i == 0) else 1000)
        per_phase[name] = round((r.txs - before_n) / (r.elapsed - before_t))
    return {"txs": r.txs, "seconds": round(r.elapsed, 3), "tx_per_s": round(r.txs / r.elapsed), "per_type": per_phase}


def bench_transfers(count: int, block: int) -> dict:
    net = make_testnet(n_orgs=4)
    r = _Runner(net)
    senders = [net.operators[o] for o in ("org1", "org2", "org3", "org4")]
    txs = [r.tx(senders[i % 4], "transfer", {"to": senders[(i + 1) % 4].address, "amount": 1}) for i in range(count)]
    for chunk in _chunks(txs, block):
        r.run(chunk)
    return {"txs": r.txs, "seconds": round(r.elapsed, 3), "tx_per_s": round(r.txs / r.elapsed)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leases", type=int, default=2000, help="leases in the market mix (5 txs each)")
    parser.add_argument("--block", type=int, default=500, help="transactions per block")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    market = bench_market(args.leases, args.block)
    transfers = bench_transfers(market["txs"], args.block)
    out = {"block_size": args.block, "market": market, "transfers": transfers}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"block size {args.block}; build_block + validate_block + commit_block on a MemoryStore")
        print(f"market mix : {market['txs']:>6} txs in {market['seconds']:>7.3f} s = {market['tx_per_s']:>6} tx/s")
        for name, rate in market["per_type"].items():
            print(f"  {name:<14} {rate:>6} tx/s")
        print(f"transfers  : {transfers['txs']:>6} txs in {transfers['seconds']:>7.3f} s = {transfers['tx_per_s']:>6} tx/s")
    return out


if __name__ == "__main__":
    main()
