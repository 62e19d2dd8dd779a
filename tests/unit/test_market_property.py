"""Random sequences of market transactions through real blocks, invariants after every block:

* credits are conserved: sum of every `bal/` key + escrow_total == supply;
* the sum of the leases' own escrow equals escrow_total, none negative, finished leases hold none;
* every lease's paid + refunded + escrow == its total;
* reserved units equal the units of pending and active leases and never exceed listed units;
* nothing due by the last block time is left unrun;
* every receipt is `ok` or a listed market code, never a crash dressed as `bad_payload`.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from genesis.testnet import make_testnet
from ledger import accounts
from ledger.encoding import sha256
from ledger.execution import Receipt
from ledger.market.common import HOUR_MS
from ledger.market.errors import CODES
from ledger.market.harness import MarketNet, check_invariants, listing_payload
from ledger.market.usage import resolution_bytes

NET = make_testnet(params={"accept_window_ms": 2 * HOUR_MS, "dispute_window_ms": 3 * HOUR_MS,
                           "usage_period_ms": HOUR_MS})
ALLOWED = (set(CODES) - {"bad_payload", "escrow_underflow"}) | {"ok", "unauthorized"}
KINDS = ("create", "open", "open", "accept", "accept", "report", "report", "confirm", "confirm", "dispute", "reject", "close", "report", "report", "report",
         "confirm", "dispute", "resolve", "arbitrate", "settle", "pause", "resume", "update", "attest",
         "revoke", "transfer")
ADVANCE = (1, 1000, 1000, 60_000, 10 * 60_000, 10 * 60_000, 30 * 60_000, HOUR_MS, HOUR_MS + 1, 3 * HOUR_MS, 26 * HOUR_MS)
SEALED = b"\x07" * 80
DIGEST = sha256(b"d")


class MarketMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.m = MarketNet(NET)
        self.providers = [NET.operators["org1"], NET.operators["org2"]]
        self.tenants = [NET.operators["org2"], NET.operators["org3"]]
        self.codes: dict[str, int] = {}

    # picking ids and parties from the current state ------------------------------------
    def _count(self, kind: str) -> int:
        return self.m.state.get(b"mkt/next/" + kind.encode(), 1) - 1

    def _lease(self, n: int, statuses: tuple[str, ...]):
        """Mostly a lease in one of `statuses` (so actions tend to make progress), else any."""
        leases = [v for _, v in self.m.state.items(b"mkt/ls/")]
        fitting = [x for x in leases if x["status"] in statuses]
        pool = fitting if fitting and n % 8 != 7 else (leases if n % 8 == 7 else [])
        return pool[n % len(pool)] if pool else None

    def _report(self, lease: dict, status: str, n: int) -> int:
        reports = [v for _, v in self.m.state.items(b"mkt/r/" + lease["id"].to_bytes(8, "big"))]
        fitting = [r["period"] for r in reports if r["status"] == status]
        if fitting and n % 8 != 7:
            return fitting[n % len(fitting)]
        return n % (lease["next_period"] + 1)

    def _listing(self, n: int):
        listings = [v for _, v in self.m.state.items(b"mkt/l/")]
        return listings[n % len(listings)] if listings else None

    def _tenant_for(self, listing: dict | None, n: int):
        ok = [t for t in self.tenants if listing is None or accounts.member(self.m.state, t.address)["org"] != listing["provider"]]
        return ok[n % len(ok)] if ok and n % 16 != 15 else self.tenants[n % 2]

    def _tenant_of(self, lease: dict):
        return next(t for t in self.tenants + self.providers if t.address == lease["tenant"])

    def _tx(self, kind: str, n: int):
        m = self.m
        listing = self._listing(n)
        lid_listing = listing["id"] if listing and n % 16 != 15 else 1 + n % 9
        owner = NET.operators[listing["provider"]] if listing and n % 8 != 7 else self.providers[n % 2]
        if kind == "create":
            return self.providers[n % 2], "listing_create", listing_payload(units=1 + n % 5, price=1 + n % 3_000_000)
        if kind == "open":
            price = listing["price"] if listing else 1
            payload = {"listing": lid_listing, "units": 1 + n % 3, "hours": 1 + (n // 7) % 4,
                       "max_price": price if n % 7 != 6 else max(1, price - 1)}
            if n % 5 == 4:
                payload["require_attested"] = ["confidential:sev-snp"]
            return self._tenant_for(listing, n), "lease_open", payload
        if kind == "pause":
            return owner, "listing_pause", {"listing": lid_listing}
        if kind == "resume":
            return owner, "listing_resume", {"listing": lid_listing}
        if kind == "update":
            return owner, "listing_update", {"listing": lid_listing, "units": 1 + n % 8}
        if kind == "attest":
            return NET.auditors["org4"], "attest", {
                "subject_type": "listing", "subject": lid_listing, "claim": "confidential:sev-snp",
                "evidence_digest": DIGEST, "expires_ms": m.time_ms + (1 + n % 5) * HOUR_MS}
        if kind == "revoke":
            return NET.auditors["org4"], "attest_revoke", {"attestation": 1 + n % max(1, self._count("attestation"))}
        if kind == "transfer":
            return self.tenants[n % 2], "transfer", {"to": self.providers[n % 2].address, "amount": 1 + n}
        wanted = {
            "accept": ("pending",), "reject": ("pending",), "close": ("active", "pending"),
            "report": ("active", "ended", "closed"), "confirm": ("active", "ended", "closed"),
            "dispute": ("active", "ended", "closed"), "resolve": ("active", "ended", "closed"),
            "arbitrate": ("active", "ended", "closed"), "settle": ("active", "ended", "closed"),
        }[kind]
        lease = self._lease(n, wanted)
        want_report = {"confirm": "pending", "dispute": "pending", "resolve": "disputed", "arbitrate": "disputed"}
        if kind in want_report and n % 8 != 7:
            reports = [r for _, r in self.m.state.items(b"mkt/r/") if r["status"] == want_report[kind]]
            if reports:
                lease = self.m.state.get(b"mkt/ls/" + reports[n % len(reports)]["lease"].to_bytes(8, "big"))
        if lease is None:
            return None
        P, T, lid = NET.operators[lease["provider"]], self._tenant_of(lease), lease["id"]
        uh = n % (lease["units"] + 2) if n % 3 == 2 else lease["units"] - n % (lease["units"] + 1)
        up = 900 + n % 101
        if kind == "accept":
            return P, "lease_accept", {"lease": lid, "attestation_digest": DIGEST, "sealed_access": SEALED}
        if kind == "reject":
            return P, "lease_reject", {"lease": lid, "reason": "policy"}
        if kind == "close":
            return (T if n % 2 else P), "lease_close", {"lease": lid, "reason": "other"}
        if kind == "report":
            period = lease["next_period"] if n % 6 != 5 else max(0, lease["next_period"] - 1)
            return P, "usage_report", {"lease": lid, "period": period, "unit_hours": uh, "uptime_permille": up}
        if kind == "confirm":
            return T, "usage_confirm", {"lease": lid, "period": self._report(lease, "pending", n)}
        if kind == "dispute":
            return T, "usage_dispute", {"lease": lid, "period": self._report(lease, "pending", n), "reason": "disagree"}
        if kind == "resolve":
            period = self._report(lease, "disputed", n)
            sender, signer = (T, P) if n % 2 else (P, T)
            sig = signer.sign(resolution_bytes(m.chain.chain_id, lid, period, uh, up))
            return sender, "usage_resolve", {"lease": lid, "period": period, "unit_hours": uh, "uptime_permille": up,
                                             "signer": signer.public_key, "signature": sig}
        if kind == "arbitrate":
            period = self._report(lease, "disputed", n)
            return NET.auditors["org4"], "usage_arbitrate", {"lease": lid, "period": period, "unit_hours": uh,
                                                             "uptime_permille": up}
        if kind == "settle":
            return (T if n % 2 else P), "lease_settle", {"lease": lid}
        raise AssertionError(kind)

    @initialize()
    def market_open_for_business(self):
        """Two listings per provider so most sequences reach leases quickly."""
        txs = [self.m.tx(p, "listing_create", listing_payload(units=4, price=1_000 * (i + 1)))
               for i, p in enumerate(self.providers + self.providers)]
        assert all(r.code == "ok" for r in self.m.block(txs))

    @rule(actions=st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 10**6)), min_size=1, max_size=4),
          advance=st.sampled_from(ADVANCE))
    def block(self, actions, advance):
        txs = []
        for kind, n in actions:
            built = self._tx(kind, n)
            if built is not None:
                txs.append(self.m.tx(*built))
        receipts: list[Receipt] = self.m.block(txs, advance)
        for tx, r in zip(txs, receipts):
            assert r.code in ALLOWED, (tx.tx.type, r)
            self.codes[(tx.tx.type, r.code)] = self.codes.get((tx.tx.type, r.code), 0) + 1

    @rule(n=st.integers(0, 10**6))
    def open_and_accept(self, n):
        """A lease that runs: opened in one block, accepted in the next."""
        built = self._tx("open", n - n % 5)   # never requires attestation
        r = self.m.block([self.m.tx(*built)], 1000)[0]
        assert r.code in ALLOWED, r
        if r.code == "ok":
            lease = self.m.state.get(b"mkt/ls/" + r.result["lease"].to_bytes(8, "big"))
            r = self.m.send(NET.operators[lease["provider"]], "lease_accept",
                            {"lease": lease["id"], "attestation_digest": DIGEST, "sealed_access": SEALED})
            assert r.code == "ok", r

    @rule(advance=st.sampled_from(ADVANCE))
    def idle(self, advance):
        self.m.advance(advance)

    @invariant()
    def books_balance(self):
        st_ = self.m.state
        assert check_invariants(st_, self.m.chain.head.time_ms) == []
        total = sum(v for _, v in st_.items(b"bal/")) + accounts.escrow_total(st_)
        assert total == accounts.supply(st_)


MarketMachine.TestCase.settings = settings(
    max_examples=75, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestMarketMachine = MarketMachine.TestCase
