"""A small driver for market scenarios through real blocks (tests, bench, demos).

Not used by a node: it builds, validates, certifies and commits blocks on a test network
(`genesis.testnet`) with a block time the caller advances. It tracks nonces itself.
"""

from __future__ import annotations

from ledger import accounts
from ledger.crypto import Signer
from ledger.market.common import HOUR_MS
from ledger.market.settlement import TERMINAL
from ledger.tx import SignedTx, make_tx


def listing_payload(**overrides) -> dict:
    """A valid listing_create payload (override any field)."""
    payload = {
        "resources": {"vcpu_milli": 4000, "memory_mib": 16384, "storage_gib": 200, "gpu_count": 0, "gpu_model": ""},
        "units": 10, "region": "eu-west", "jurisdiction": "EU",
        "features": ["confidential:sev-snp", "encrypted-at-rest"], "price": 1_000_000,
        "available_from_ms": 0, "available_until_ms": 2_000_000_000_000,
        "sla": {"uptime_permille": 999, "penalty_permille": 10, "penalty_cap_permille": 500},
    }
    payload.update(overrides)
    return payload


class MarketNet:
    def __init__(self, net, chain=None, start_ms: int | None = None):
        self.net = net
        self.chain = chain if chain is not None else net.chain()
        self.time_ms = start_ms if start_ms is not None else net.doc["genesis_time_ms"] + 1000
        self.cert = None
        self._nonces: dict[str, int] = {}
        self.last_result = None

    # building ---------------------------------------------------------------------
    def tx(self, signer: Signer, kind: str, payload: dict) -> SignedTx:
        nonce = self._nonces.get(signer.address)
        if nonce is None:
            nonce = accounts.next_nonce(self.chain.state(), signer.address)
        self._nonces[signer.address] = nonce + 1
        return make_tx(signer, self.chain.chain_id, nonce, kind, payload)

    def block(self, txs: list[SignedTx], advance_ms: int = 1000, validate: bool = True):
        """Build, (re)validate, certify and commit one block `advance_ms` after the last.
        With no transactions, only if an empty block is due then (ledger/heartbeat.py), as
        on a real chain; otherwise only time passes."""
        self.time_ms += advance_ms
        if not txs and self.chain.heartbeat_due(self.time_ms) is None:
            return []
        blk, result = self.chain.build_block(
            txs, time_ms=self.time_ms, view=0, proposer=self.net.validators[0].public_key, last_cert=self.cert,
            verified={t.hash for t in txs},
        )
        if result.excluded:
            raise AssertionError(f"transactions left out of the block: {[(c, m) for _, c, m in result.excluded]}")
        if validate:
            result = self.chain.validate_block(blk, verified={t.hash for t in txs})
        cert = self.net.certify(self.chain, blk)
        self.chain.commit_block(blk, cert, result)
        self.cert = cert
        self.time_ms = blk.header.time_ms
        self.last_result = result
        return result.receipts

    def send(self, signer: Signer, kind: str, payload: dict, advance_ms: int = 1000):
        """One transaction in its own block; returns its receipt."""
        return self.block([self.tx(signer, kind, payload)], advance_ms)[0]

    def advance(self, ms: int) -> None:
        """`ms` pass, then a heartbeat block if one is due (a due transition, a pending
        validator change, or heartbeat_interval_ms since the last block): time-driven
        transitions due by then run. With nothing due no block is made."""
        self.block([], ms)

    def advance_hours(self, hours: int) -> None:
        self.advance(hours * HOUR_MS)

    @property
    def state(self):
        return self.chain.state()


def check_invariants(state, head_time_ms: int | None = None) -> list[str]:
    """Credit conservation and market bookkeeping; returns the violations (empty = fine)."""
    problems = []
    balances = sum(v for _, v in state.items(b"bal/"))
    escrow = accounts.escrow_total(state)
    supply = accounts.supply(state)
    if balances + escrow != supply:
        problems.append(f"balances {balances} + escrow {escrow} != supply {supply}")
    lease_escrow, reserved = 0, {}
    for _, lease in state.items(b"mkt/ls/"):
        if lease["escrow"] < 0:
            problems.append(f"lease {lease['id']} escrow negative")
        if lease["status"] in TERMINAL and lease["escrow"] != 0:
            problems.append(f"lease {lease['id']} is {lease['status']} but holds {lease['escrow']}")
        if lease["paid"] + lease["refunded"] + lease["escrow"] != lease["total"]:
            problems.append(f"lease {lease['id']} paid+refunded+escrow != total")
        lease_escrow += lease["escrow"]
        if lease["status"] in ("pending", "active"):
            reserved[lease["listing"]] = reserved.get(lease["listing"], 0) + lease["units"]
    if lease_escrow != escrow:
        problems.append(f"lease escrows {lease_escrow} != escrow_total {escrow}")
    for _, listing in state.items(b"mkt/l/"):
        if listing["reserved"] > listing["units"]:
            problems.append(f"listing {listing['id']} reserves {listing['reserved']} > {listing['units']}")
        if listing["reserved"] != reserved.get(listing["id"], 0):
            problems.append(f"listing {listing['id']} reserved {listing['reserved']} != leases' {reserved.get(listing['id'], 0)}")
    if head_time_ms is not None:  # everything due by the last block has been run
        for key, _ in state.iter_raw(b"mkt/due/"):
            if int.from_bytes(key[8:16], "big") <= head_time_ms:
                problems.append(f"due item {key!r} was not run by {head_time_ms}")
    return problems
