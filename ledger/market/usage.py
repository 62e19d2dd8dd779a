"""Usage reports, confirmation, disputes and their resolution, and explicit settlement.

Period `p` of a lease covers ``[start + p*P, min(start + (p+1)*P, end))`` where P is the
lease's `period_ms` and `end` its end time (or close time). The provider reports periods
in order, each once it is over, until the report window closes (`report_deadline_ms` =
end + dispute_window_ms). A report is

    pending --usage_confirm (tenant) | dispute window ends (automatic)--> confirmed
    pending --usage_dispute (tenant)--> disputed
    disputed --usage_resolve (both sign) | usage_arbitrate (auditor)--> confirmed

and confirmed reports are paid by the next settlement (`lease_settle`, or the automatic
final settlement).
"""

from __future__ import annotations

from ledger import accounts
from ledger.crypto import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, address_of, verify
from ledger.encoding import DOMAIN_RESOLUTION, signing_bytes
from ledger.market import leases
from ledger.market.common import (
    DUE_REPORT, HOUR_MS, bytes_field, check_fields, int_field, lease_key, report_key, schedule,
    text_field, unschedule,
)
from ledger.market.errors import reject
from ledger.market.settlement import TERMINAL, effective_end, penalty, settle, try_finalise
from ledger.state import StateView

MAX_REASON = 256


def resolution_bytes(chain_id: str, lease_id: int, period: int, unit_hours: int, uptime_permille: int) -> bytes:
    """What the counter-party signs to agree a dispute's outcome (client and chain use this)."""
    return signing_bytes(DOMAIN_RESOLUTION, chain_id, [lease_id, period, unit_hours, uptime_permille])


def _when(ctx) -> tuple[int, int, bytes | None]:
    return (ctx.time_ms, ctx.height, ctx.tx_hash)


def _period_bounds(lease: dict, period: int) -> tuple[int, int]:
    start = lease["start_ms"] + period * lease["period_ms"]
    return start, min(start + lease["period_ms"], effective_end(lease))


def _period_cap(lease: dict, start: int, end: int) -> int:
    """Most unit-hours a period can hold: units x its length in hours, rounded up."""
    return lease["units"] * -(-(end - start) // HOUR_MS)


def _check_usage(lease: dict, report: dict | None, period: int, unit_hours: int) -> None:
    start, end = _period_bounds(lease, period)
    cap = _period_cap(lease, start, end)
    if unit_hours > cap:
        raise reject("usage_exceeds_lease", f"period {period} can hold at most {cap} unit-hours, not {unit_hours}")
    before = lease["reported_unit_hours"] - (report["unit_hours"] if report else 0)
    limit = lease["units"] * lease["hours"]
    if before + unit_hours > limit:
        raise reject("usage_exceeds_lease", f"the lease covers {limit} unit-hours; {before} are reported already")


def _get_report(state: StateView, lease: dict, payload: dict) -> dict:
    period = int_field(payload, "period", 0, 2**32 - 1)
    report = state.get(report_key(lease["id"], period))
    if report is None:
        raise reject("unknown_report", f"lease {lease['id']} has no report for period {period}")
    return report


def _confirm(state: StateView, lease: dict, report: dict, by: str, when, unit_hours: int | None = None,
             uptime: int | None = None) -> None:
    if unit_hours is not None:
        lease["reported_unit_hours"] += unit_hours - report["unit_hours"]
        report["unit_hours"], report["uptime_permille"] = unit_hours, uptime
    report["charge"] = report["unit_hours"] * lease["price"]
    report["penalty"] = penalty(report["charge"], report["uptime_permille"], lease["sla"])
    report["status"] = "confirmed"
    report["confirmed_by"] = by
    report["confirmed_ms"] = when[0]
    lease["open_reports"] -= 1
    lease["unsettled"].append(report["period"])
    state.put(report_key(lease["id"], report["period"]), report)
    state.put(lease_key(lease["id"]), lease)
    try_finalise(state, lease, when)


def report(state: StateView, ctx, payload: dict) -> dict:
    """`usage_report {lease, period, unit_hours, uptime_permille}` (provider operator)."""
    check_fields(payload, {"lease", "period", "unit_hours", "uptime_permille"})
    lease = leases.as_provider(state, ctx, payload)
    period = int_field(payload, "period", 0, 2**32 - 1)
    unit_hours = int_field(payload, "unit_hours", 0, 2**40)
    uptime = int_field(payload, "uptime_permille", 0, 1000)
    if lease["status"] in TERMINAL:
        raise reject("lease_settled", f"lease {lease['id']} is {lease['status']}")
    if lease["status"] not in ("active", "ended", "closed"):
        raise reject("lease_not_active", f"lease {lease['id']} is {lease['status']}")
    if lease["report_deadline_ms"] is not None and ctx.time_ms >= lease["report_deadline_ms"]:
        raise reject("report_window_closed", f"reports for lease {lease['id']} closed at {lease['report_deadline_ms']}")
    if period != lease["next_period"]:
        raise reject("bad_period", f"the next period to report for lease {lease['id']} is {lease['next_period']}")
    start, end = _period_bounds(lease, period)
    if start >= effective_end(lease):
        raise reject("bad_period", f"lease {lease['id']} has no period {period}")
    if ctx.time_ms < end:
        raise reject("period_not_over", f"period {period} ends at {end}")
    _check_usage(lease, None, period, unit_hours)
    window_end = ctx.time_ms + ctx.params.get("dispute_window_ms", 86_400_000)
    state.put(report_key(lease["id"], period), {
        "lease": lease["id"], "period": period, "period_start_ms": start, "period_end_ms": end,
        "unit_hours": unit_hours, "uptime_permille": uptime,
        "reported_unit_hours": unit_hours, "reported_uptime_permille": uptime,
        "reported_ms": ctx.time_ms, "reported_by": ctx.sender, "window_end_ms": window_end,
        "status": "pending", "dispute_reason": None, "disputed_ms": None,
        "confirmed_by": None, "confirmed_ms": None, "charge": 0, "penalty": 0, "settlement": None, "arbiter": None,
    })
    lease["next_period"] += 1
    lease["open_reports"] += 1
    lease["reported_unit_hours"] += unit_hours
    state.put(lease_key(lease["id"]), lease)
    schedule(state, ctx.time_ms, window_end, DUE_REPORT, lease["id"], period)
    return {"lease": lease["id"], "period": period, "window_end_ms": window_end}


def _pending(lease: dict, rep: dict, now_ms: int) -> None:
    # the window first: once it has closed the report was confirmed automatically, and
    # "the window closed" is what the tenant needs to hear
    if now_ms >= rep["window_end_ms"]:
        raise reject("dispute_window_closed", f"the window for report {lease['id']}/{rep['period']} closed at {rep['window_end_ms']}")
    if rep["status"] != "pending":
        raise reject("report_not_pending", f"report {lease['id']}/{rep['period']} is {rep['status']}")


def confirm(state: StateView, ctx, payload: dict) -> dict:
    """`usage_confirm {lease, period}` (the tenant)."""
    check_fields(payload, {"lease", "period"})
    lease = leases.as_tenant(state, ctx, payload)
    rep = _get_report(state, lease, payload)
    _pending(lease, rep, ctx.time_ms)
    unschedule(state, rep["window_end_ms"], DUE_REPORT, lease["id"], rep["period"])
    _confirm(state, lease, rep, "tenant", _when(ctx))
    return {"lease": lease["id"], "period": rep["period"], "charge": rep["charge"], "penalty": rep["penalty"]}


def dispute(state: StateView, ctx, payload: dict) -> dict:
    """`usage_dispute {lease, period, reason}` (the tenant, within the dispute window)."""
    check_fields(payload, {"lease", "period", "reason"})
    lease = leases.as_tenant(state, ctx, payload)
    rep = _get_report(state, lease, payload)
    reason = text_field(payload, "reason", MAX_REASON)
    _pending(lease, rep, ctx.time_ms)
    unschedule(state, rep["window_end_ms"], DUE_REPORT, lease["id"], rep["period"])
    rep.update(status="disputed", dispute_reason=reason, disputed_ms=ctx.time_ms)
    state.put(report_key(lease["id"], rep["period"]), rep)
    return {"lease": lease["id"], "period": rep["period"], "status": "disputed"}


def _outcome(state: StateView, lease: dict, payload: dict) -> tuple[dict, int, int]:
    rep = _get_report(state, lease, payload)
    unit_hours = int_field(payload, "unit_hours", 0, 2**40)
    uptime = int_field(payload, "uptime_permille", 0, 1000)
    if rep["status"] != "disputed":
        raise reject("report_not_disputed", f"report {lease['id']}/{rep['period']} is {rep['status']}")
    _check_usage(lease, rep, rep["period"], unit_hours)
    return rep, unit_hours, uptime


def resolve(state: StateView, ctx, payload: dict) -> dict:
    """`usage_resolve {lease, period, unit_hours, uptime_permille, signer, signature}`: one
    party sends the outcome with the other party's signature of `resolution_bytes`."""
    check_fields(payload, {"lease", "period", "unit_hours", "uptime_permille", "signer", "signature"})
    lease = leases.as_party(state, ctx, payload)
    rep, unit_hours, uptime = _outcome(state, lease, payload)
    signer = bytes_field(payload, "signer", PUBLIC_KEY_SIZE)
    signature = bytes_field(payload, "signature", SIGNATURE_SIZE)
    if ctx.sender == lease["tenant"]:
        m = accounts.member(state, address_of(signer))
        ok = m is not None and m["org"] == lease["provider"] and m["role"] == "operator"
        other = f"an operator of {lease['provider']}"
    else:
        ok = signer == lease["tenant_key"]
        other = f"the tenant {lease['tenant']}"
    # two causes, told apart: the wrong counter-signer, or the right one over other values
    if not ok:
        who = "is you" if signer == ctx.sender_key else f"is not {other}"
        raise reject("bad_resolution_signer", f"the counter-signer {address_of(signer)} {who}: the resolution "
                                              f"needs the other party's signature, by {other}")
    if not verify(signer, resolution_bytes(ctx.chain_id, lease["id"], rep["period"], unit_hours, uptime), signature):
        raise reject("bad_resolution_signature",
                     f"the signature by {address_of(signer)} does not cover lease {lease['id']} period {rep['period']} "
                     f"with unit_hours={unit_hours} uptime_permille={uptime} on chain {ctx.chain_id}: they signed "
                     "different values (or another lease, period or chain); send exactly what they signed "
                     "(`cxl lease sign-resolution`)")
    _confirm(state, lease, rep, "resolution", _when(ctx), unit_hours, uptime)
    return {"lease": lease["id"], "period": rep["period"], "charge": rep["charge"], "penalty": rep["penalty"]}


def arbitrate(state: StateView, ctx, payload: dict) -> dict:
    """`usage_arbitrate {lease, period, unit_hours, uptime_permille}` (role auditor, of a
    third organisation): decides a disputed report."""
    check_fields(payload, {"lease", "period", "unit_hours", "uptime_permille"})
    lease = leases.get(state, int_field(payload, "lease", 1, 2**63 - 1))
    if ctx.member["org"] in (lease["provider"], lease["tenant_org"]):
        raise reject("arbiter_conflict", f"{ctx.member['org']} is a party to lease {lease['id']}")
    rep, unit_hours, uptime = _outcome(state, lease, payload)
    rep["arbiter"] = ctx.sender
    _confirm(state, lease, rep, "arbiter", _when(ctx), unit_hours, uptime)
    return {"lease": lease["id"], "period": rep["period"], "charge": rep["charge"], "penalty": rep["penalty"]}


def settle_tx(state: StateView, ctx, payload: dict) -> dict:
    """`lease_settle {lease}` (tenant or provider operator): pay confirmed usage now, and
    finalise the lease if it can be. Fails with `nothing_to_settle` if neither applies."""
    check_fields(payload, {"lease"})
    lease = leases.as_party(state, ctx, payload)
    record = settle(state, lease, _when(ctx))
    if record is None:
        raise reject("nothing_to_settle", f"lease {lease['id']} has no confirmed unsettled usage and cannot be finalised yet")
    return {"lease": lease["id"], "settlement": record["seq"], "kind": record["kind"],
            "provider_payout": record["provider_payout"], "tenant_refund": record["tenant_refund"]}


# the automatic confirmation (called by the begin-block hook) -----------------------------
def auto_confirm(state: StateView, lease: dict, period: int, bctx) -> None:
    rep = state.get(report_key(lease["id"], period))
    if rep is None or rep["status"] != "pending":
        return
    _confirm(state, lease, rep, "auto", (bctx.time_ms, bctx.height, None))
