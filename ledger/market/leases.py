"""Leases: open (escrow the full price, reserve units), accept with sealed access, reject,
close early, and the time-driven expiry and end.

    pending --lease_accept--> active --(end time)--> ended --(final settlement)--> settled
    pending --lease_reject--> rejected         active --lease_close--> closed --> settled
    pending --(accept deadline)--> expired     pending --lease_close (tenant)--> cancelled

A lease copies its listing's price, SLA and resources at opening, and the chain's
`usage_period_ms` and windows at the time they apply, so governance or listing changes
never alter a running lease.
"""

from __future__ import annotations

from ledger import accounts
from ledger.market import attestations, listings
from ledger.market.common import (
    DUE_ACCEPT, DUE_END, DUE_FINAL, HOUR_MS, check_fields, id_field, int_field, ix_provider_lease,
    ix_tenant_lease, lease_key, next_id, price_field, schedule, text_list, unschedule, bytes_field,
)
from ledger.market.errors import reject
from ledger.market.settlement import TERMINAL, refund_all, try_finalise
from ledger.state import StateView

MAX_HOURS = 24 * 366 * 10
SEALED_MIN = 49      # SealedBox overhead (32-byte ephemeral key + 16-byte MAC) + 1 byte
SEALED_MAX = 4096
REJECT_REASONS = ("no_capacity", "policy", "maintenance", "other")
CLOSE_REASONS = ("no_longer_needed", "sla_breach", "hardware_failure", "maintenance", "policy", "other")


def get(state: StateView, lease_id: int) -> dict:
    lease = state.get(lease_key(lease_id))
    if lease is None:
        raise reject("unknown_lease", f"no lease {lease_id}")
    return lease


def _when(ctx) -> tuple[int, int, bytes | None]:
    return (ctx.time_ms, ctx.height, ctx.tx_hash)


def is_provider(ctx, lease: dict) -> bool:
    return ctx.member is not None and ctx.member["org"] == lease["provider"] and ctx.member["role"] == "operator"


def as_provider(state: StateView, ctx, payload: dict) -> dict:
    lease = get(state, id_field(payload, "lease"))
    if not is_provider(ctx, lease):
        raise reject("not_provider", f"lease {lease['id']} is provided by {lease['provider']}")
    return lease


def as_tenant(state: StateView, ctx, payload: dict) -> dict:
    lease = get(state, id_field(payload, "lease"))
    if ctx.sender != lease["tenant"]:
        raise reject("not_tenant", f"lease {lease['id']} belongs to tenant {lease['tenant']}")
    return lease


def as_party(state: StateView, ctx, payload: dict) -> dict:
    lease = get(state, id_field(payload, "lease"))
    if ctx.sender != lease["tenant"] and not is_provider(ctx, lease):
        raise reject("not_party", f"only lease {lease['id']}'s tenant or provider operators may do this")
    return lease


def open_lease(state: StateView, ctx, payload: dict) -> dict:
    """`lease_open {listing, units, hours, max_price, require_attested?, attested_by?}`."""
    check_fields(payload, {"listing", "units", "hours", "max_price"}, {"require_attested", "attested_by"})
    listing = listings.get(state, id_field(payload, "listing"))
    units = int_field(payload, "units", 1, listings.MAX_UNITS)
    hours = int_field(payload, "hours", 1, MAX_HOURS)
    max_price = price_field(payload, "max_price")
    required = text_list(payload, "require_attested") if "require_attested" in payload else []
    issuers = text_list(payload, "attested_by") if "attested_by" in payload else []
    now = ctx.time_ms
    if listing["status"] != "active":
        raise reject(f"listing_{listing['status']}", f"listing {listing['id']} is {listing['status']}")
    if listing["provider"] == ctx.member["org"]:
        raise reject("own_listing", f"listing {listing['id']} belongs to your organisation")
    if now < listing["available_from_ms"]:
        raise reject("listing_not_yet_available", f"listing {listing['id']} is available from {listing['available_from_ms']}")
    if now >= listing["available_until_ms"]:
        raise reject("listing_expired", f"listing {listing['id']} was available until {listing['available_until_ms']}")
    if now + hours * HOUR_MS > listing["available_until_ms"]:
        raise reject("outside_availability", f"{hours} h from now runs past {listing['available_until_ms']}")
    if listing["price"] > max_price:
        raise reject("price_above_max", f"price {listing['price']} per unit-hour is above max_price {max_price}")
    total = units * hours * listing["price"]
    if total > accounts.MAX_AMOUNT:
        raise reject("bad_amount", f"lease total {total} is too large")
    used = attestations.check_required(state, listing, required, issuers, now)
    listings.reserve(state, listing, units)
    accounts.move_to_escrow(state, ctx.sender, total)
    lid = next_id(state, "lease")
    deadline = now + ctx.params.get("accept_window_ms", 3_600_000)
    lease = {
        "id": lid, "listing": listing["id"], "provider": listing["provider"], "payee": listing["payee"],
        "tenant": ctx.sender, "tenant_key": ctx.sender_key, "tenant_org": ctx.member["org"],
        "units": units, "hours": hours, "price": listing["price"], "sla": listing["sla"],
        "resources": listing["resources"], "region": listing["region"],
        "jurisdiction": listing["jurisdiction"], "features": listing["features"],
        "required_attested": required, "attestations": used,
        "total": total, "escrow": total, "paid": 0, "penalties": 0, "refunded": 0,
        "status": "pending", "opened_ms": now, "accept_deadline_ms": deadline,
        "start_ms": None, "end_ms": None, "closed_ms": None, "close_reason": None, "closed_by": None,
        "report_deadline_ms": None, "settled_ms": None,
        "attestation_digest": None, "sealed_access": None, "accepted_by": None,
        "period_ms": ctx.params.get("usage_period_ms", 3_600_000),
        "next_period": 0, "open_reports": 0, "reported_unit_hours": 0, "settlements": 0,
        "unsettled": [],   # periods confirmed but not yet paid
    }
    state.put(lease_key(lid), lease)
    state.put(ix_tenant_lease(ctx.sender, lid), None)
    state.put(ix_provider_lease(listing["provider"], lid), None)
    schedule(state, now, deadline, DUE_ACCEPT, lid)
    return {"lease": lid, "escrowed": total, "accept_deadline_ms": deadline}


def check_sealed(value) -> bytes:
    if not isinstance(value, bytes):
        raise reject("bad_sealed_access", "sealed_access must be bytes (a SealedBox ciphertext)")
    if not SEALED_MIN <= len(value) <= SEALED_MAX:
        raise reject("bad_sealed_access", f"sealed_access must be {SEALED_MIN}-{SEALED_MAX} bytes, not {len(value)}")
    return value


def accept(state: StateView, ctx, payload: dict) -> dict:
    """`lease_accept {lease, attestation_digest, sealed_access}`: the provider activates."""
    check_fields(payload, {"lease", "attestation_digest", "sealed_access"})
    lease = as_provider(state, ctx, payload)
    digest = bytes_field(payload, "attestation_digest", 32)
    sealed = check_sealed(payload["sealed_access"])
    if lease["status"] in ("pending", "expired") and ctx.time_ms >= lease["accept_deadline_ms"]:
        # the hook expired it at the deadline; say why rather than "not pending"
        raise reject("accept_window_closed", f"lease {lease['id']} had to be accepted before {lease['accept_deadline_ms']}")
    if lease["status"] != "pending":
        raise reject("lease_not_pending", f"lease {lease['id']} is {lease['status']}")
    unschedule(state, lease["accept_deadline_ms"], DUE_ACCEPT, lease["id"])
    lease.update(status="active", start_ms=ctx.time_ms, end_ms=ctx.time_ms + lease["hours"] * HOUR_MS,
                 attestation_digest=digest, sealed_access=sealed, accepted_by=ctx.sender)
    schedule(state, ctx.time_ms, lease["end_ms"], DUE_END, lease["id"])
    state.put(lease_key(lease["id"]), lease)
    return {"lease": lease["id"], "start_ms": lease["start_ms"], "end_ms": lease["end_ms"]}


def _reason(payload: dict, allowed: tuple[str, ...]) -> str:
    reason = payload.get("reason")
    if reason not in allowed:
        raise reject("bad_reason", f"reason must be one of {', '.join(allowed)}")
    return reason


def reject_lease(state: StateView, ctx, payload: dict) -> dict:
    """`lease_reject {lease, reason}`: the provider declines a pending lease; full refund."""
    check_fields(payload, {"lease", "reason"})
    lease = as_provider(state, ctx, payload)
    reason = _reason(payload, REJECT_REASONS)
    if lease["status"] != "pending":
        raise reject("lease_not_pending", f"lease {lease['id']} is {lease['status']}")
    unschedule(state, lease["accept_deadline_ms"], DUE_ACCEPT, lease["id"])
    listings.release(state, lease["listing"], lease["units"])
    lease.update(close_reason=reason, closed_by=ctx.sender, closed_ms=ctx.time_ms)
    record = refund_all(state, lease, _when(ctx), "rejected")
    return {"lease": lease["id"], "refund": record["tenant_refund"]}


def close(state: StateView, ctx, payload: dict) -> dict:
    """`lease_close {lease, reason}`: either side ends an active lease early (the tenant
    may also cancel a pending one). Usage up to now is still reported and settled."""
    check_fields(payload, {"lease", "reason"})
    lease = as_party(state, ctx, payload)
    reason = _reason(payload, CLOSE_REASONS)
    now = ctx.time_ms
    if lease["status"] == "pending" and ctx.sender == lease["tenant"]:
        unschedule(state, lease["accept_deadline_ms"], DUE_ACCEPT, lease["id"])
        listings.release(state, lease["listing"], lease["units"])
        lease.update(close_reason=reason, closed_by=ctx.sender, closed_ms=now)
        record = refund_all(state, lease, _when(ctx), "cancelled")
        return {"lease": lease["id"], "status": "cancelled", "refund": record["tenant_refund"]}
    if lease["status"] in TERMINAL:
        raise reject("lease_settled", f"lease {lease['id']} is {lease['status']}")
    if lease["status"] != "active":
        raise reject("lease_not_active", f"lease {lease['id']} is {lease['status']}")
    unschedule(state, lease["end_ms"], DUE_END, lease["id"])
    listings.release(state, lease["listing"], lease["units"])
    lease.update(status="closed", close_reason=reason, closed_by=ctx.sender, closed_ms=now,
                 report_deadline_ms=now + ctx.params.get("dispute_window_ms", 86_400_000))
    schedule(state, now, lease["report_deadline_ms"], DUE_FINAL, lease["id"])
    state.put(lease_key(lease["id"]), lease)
    record = try_finalise(state, lease, _when(ctx))
    return {"lease": lease["id"], "status": lease["status"], **({"settlement": record["seq"]} if record else {})}


# time-driven transitions (called by the begin-block hook) ------------------------------
def expire(state: StateView, lease: dict, bctx) -> None:
    if lease["status"] != "pending":
        return
    listings.release(state, lease["listing"], lease["units"])
    refund_all(state, lease, (bctx.time_ms, bctx.height, None), "expired")


def end(state: StateView, lease: dict, bctx) -> None:
    if lease["status"] != "active":
        return
    listings.release(state, lease["listing"], lease["units"])
    lease.update(status="ended",
                 report_deadline_ms=lease["end_ms"] + bctx.params.get("dispute_window_ms", 86_400_000))
    if lease["report_deadline_ms"] > bctx.time_ms:
        schedule(state, bctx.time_ms, lease["report_deadline_ms"], DUE_FINAL, lease["id"])
    # else the block time jumped past the report window too: finalise now if nothing is
    # open; a report still open finalises the lease when it is confirmed or resolved
    state.put(lease_key(lease["id"]), lease)
    try_finalise(state, lease, (bctx.time_ms, bctx.height, None))
