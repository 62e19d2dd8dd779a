"""Settlement: paying providers from a lease's escrow, refunding tenants, immutable records.

For each confirmed usage report of a lease::

    charge  = unit_hours * price                              (micro-credits)
    missed  = max(0, sla.uptime_permille - uptime_permille)   (per-mille points)
    penalty = charge * min(missed * sla.penalty_permille, sla.penalty_cap_permille) // 1000
    payout  = charge - penalty                                (to the listing's payee)

A settlement pays the payout of every confirmed, not yet settled report. The final
settlement (when the lease has ended or was closed, no report is open, and either every
period is reported or the report window has closed) also refunds the whole rest of the
escrow (unused hours and penalties) to the tenant and makes the lease `settled`.

Each settlement is a record at ``mkt/s/<lease><seq>``, written once and never changed.
Credits move only through `accounts.release_from_escrow`, so balances + escrow_total
stays equal to supply, and the lease's own `escrow` field tracks what it still holds.
"""

from __future__ import annotations

from ledger import accounts
from ledger.market.common import DUE_FINAL, lease_key, put_once, report_key, settlement_key, unschedule
from ledger.market.errors import reject
from ledger.state import StateView

TERMINAL = ("settled", "rejected", "expired", "cancelled")


def penalty(charge: int, uptime_permille: int, sla: dict) -> int:
    missed = max(0, sla["uptime_permille"] - uptime_permille)
    rate = min(missed * sla["penalty_permille"], sla["penalty_cap_permille"])
    return charge * rate // 1000


def effective_end(lease: dict) -> int:
    if lease["closed_ms"] is not None and lease["closed_ms"] < lease["end_ms"]:
        return lease["closed_ms"]
    return lease["end_ms"]


def all_periods_reported(lease: dict) -> bool:
    return lease["start_ms"] + lease["next_period"] * lease["period_ms"] >= effective_end(lease)


def can_finalise(lease: dict, now_ms: int) -> bool:
    return (
        lease["status"] in ("ended", "closed")
        and lease["open_reports"] == 0
        and (all_periods_reported(lease) or now_ms >= lease["report_deadline_ms"])
    )


def _take(state: StateView, lease: dict, to: str, amount: int) -> None:
    if amount == 0:
        return
    if amount > lease["escrow"]:
        raise reject("escrow_underflow", f"lease {lease['id']} holds {lease['escrow']}, cannot pay {amount}")
    accounts.release_from_escrow(state, to, amount)
    lease["escrow"] -= amount


def _record(state: StateView, lease: dict, when: tuple[int, int, bytes | None], kind: str,
            periods: list[int], charge: int, pen: int, payout: int, refund: int) -> dict:
    time_ms, height, tx_hash = when
    lease["settlements"] += 1
    record = {
        "lease": lease["id"], "seq": lease["settlements"], "kind": kind,
        "time_ms": time_ms, "height": height, "tx": tx_hash,
        "periods": periods, "charge": charge, "penalty": pen,
        "provider_payout": payout, "payee": lease["payee"],
        "tenant_refund": refund, "tenant": lease["tenant"], "escrow_after": lease["escrow"],
    }
    put_once(state, settlement_key(lease["id"], lease["settlements"]), record)
    return record


def settle(state: StateView, lease: dict, when: tuple[int, int, bytes | None]) -> dict | None:
    """Pay confirmed unsettled usage; finalise if possible. Returns the record, or None
    when there was nothing to do. Writes the lease back."""
    now_ms = when[0]
    if lease["status"] in TERMINAL:
        raise reject("lease_settled", f"lease {lease['id']} is {lease['status']}")
    periods, charge, pen = [], 0, 0
    seq = lease["settlements"] + 1
    for period in sorted(lease["unsettled"]):   # confirmed, not yet paid: no scan of all reports
        key = report_key(lease["id"], period)
        report = state.get(key)
        periods.append(period)
        charge += report["charge"]
        pen += report["penalty"]
        report["settlement"] = seq
        state.put(key, report)
    lease["unsettled"] = []
    final = can_finalise(lease, now_ms)
    if not periods and not final:
        return None
    payout = charge - pen
    _take(state, lease, lease["payee"], payout)
    lease["paid"] += payout
    lease["penalties"] += pen
    refund = 0
    if final:
        refund = lease["escrow"]
        _take(state, lease, lease["tenant"], refund)
        lease["refunded"] += refund
        lease["status"] = "settled"
        lease["settled_ms"] = now_ms
        unschedule(state, lease["report_deadline_ms"], DUE_FINAL, lease["id"])
    record = _record(state, lease, when, "final" if final else "usage", periods, charge, pen, payout, refund)
    state.put(lease_key(lease["id"]), lease)
    return record


def try_finalise(state: StateView, lease: dict, when: tuple[int, int, bytes | None]) -> dict | None:
    """The automatic final settlement, run whenever a lease may have become finalisable."""
    if can_finalise(lease, when[0]):
        return settle(state, lease, when)
    return None


def refund_all(state: StateView, lease: dict, when: tuple[int, int, bytes | None], status: str) -> dict:
    """A lease that never ran (rejected, expired, cancelled): the whole escrow goes back."""
    refund = lease["escrow"]
    _take(state, lease, lease["tenant"], refund)
    lease["refunded"] += refund
    lease["status"] = status
    lease["settled_ms"] = when[0]
    record = _record(state, lease, when, "refund", [], 0, 0, 0, refund)
    state.put(lease_key(lease["id"]), lease)
    return record
