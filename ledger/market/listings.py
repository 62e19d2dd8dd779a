"""Capacity listings: create, update, pause, resume, withdraw (the provider's operators).

The provider organisation is the sender's organisation. A listing's terms are copied into
each lease when it is opened, so later updates never change a running lease. `reserved`
counts the units held by pending and active leases; it never exceeds `units`.

    active --pause--> paused --resume--> active
    active|paused --withdraw--> withdrawn (final; running leases continue)
"""

from __future__ import annotations

from ledger import accounts
from ledger.market.common import (
    check_fields, id_field, int_field, ix_provider_listing, listing_key, next_id, price_field,
    text_field, text_list,
)
from ledger.market.errors import reject
from ledger.state import StateView

TERM_FIELDS = {
    "resources", "units", "region", "jurisdiction", "features", "price",
    "available_from_ms", "available_until_ms", "sla",
}
OPTIONAL_FIELDS = {"payee"}
RESOURCE_FIELDS = {"vcpu_milli", "memory_mib", "storage_gib", "gpu_count", "gpu_model"}
SLA_FIELDS = {"uptime_permille", "penalty_permille", "penalty_cap_permille"}
MAX_UNITS = 1_000_000_000
MAX_TIME = 2**62


def _resources(value) -> dict:
    if not isinstance(value, dict):
        raise reject("bad_payload", "resources must be a map")
    check_fields(value, RESOURCE_FIELDS)
    out = {
        "vcpu_milli": int_field(value, "vcpu_milli", 1, 10**9),
        "memory_mib": int_field(value, "memory_mib", 0, 2**40),
        "storage_gib": int_field(value, "storage_gib", 0, 2**40),
        "gpu_count": int_field(value, "gpu_count", 0, 1024),
        "gpu_model": text_field(value, "gpu_model", allow_empty=True),
    }
    if out["gpu_count"] and not out["gpu_model"]:
        raise reject("bad_payload", "gpu_model must name the GPU when gpu_count > 0")
    return out


def _sla(value) -> dict:
    if not isinstance(value, dict):
        raise reject("bad_payload", "sla must be a map")
    check_fields(value, SLA_FIELDS)
    return {
        "uptime_permille": int_field(value, "uptime_permille", 0, 1000),
        "penalty_permille": int_field(value, "penalty_permille", 0, 1000),
        "penalty_cap_permille": int_field(value, "penalty_cap_permille", 0, 1000),
    }


def normalise_terms(terms: dict, now_ms: int) -> dict:
    """Check a full set of listing terms (no state needed); return their canonical form."""
    out = {
        "resources": _resources(terms.get("resources")),
        "units": int_field(terms, "units", 1, MAX_UNITS),
        "region": text_field(terms, "region"),
        "jurisdiction": text_field(terms, "jurisdiction"),
        "features": text_list(terms, "features"),
        "price": price_field(terms, "price"),
        "available_from_ms": int_field(terms, "available_from_ms", 0, MAX_TIME),
        "available_until_ms": int_field(terms, "available_until_ms", 0, MAX_TIME),
        "sla": _sla(terms.get("sla")),
    }
    if out["available_until_ms"] <= max(out["available_from_ms"], now_ms):
        raise reject("bad_payload", "available_until_ms must be after available_from_ms and the block time")
    return out


def _payee(state: StateView, ctx, payload: dict, default: str) -> str:
    if "payee" not in payload:
        return default
    payee = accounts.require_address(payload["payee"], "payee")
    m = accounts.member(state, payee)
    if m is None or m["org"] != ctx.member["org"]:
        raise reject("bad_payee", f"payee {payee} is not a member of {ctx.member['org']}")
    return payee


def get(state: StateView, listing_id: int) -> dict:
    listing = state.get(listing_key(listing_id))
    if listing is None:
        raise reject("unknown_listing", f"no listing {listing_id}")
    return listing


def _own(state: StateView, ctx, payload: dict) -> dict:
    listing = get(state, id_field(payload, "listing"))
    if listing["provider"] != ctx.member["org"]:
        raise reject("not_provider", f"listing {listing['id']} belongs to {listing['provider']}, not {ctx.member['org']}")
    if listing["status"] == "withdrawn":
        raise reject("listing_withdrawn", f"listing {listing['id']} was withdrawn")
    return listing


def create(state: StateView, ctx, payload: dict) -> dict:
    """`listing_create {resources, units, region, jurisdiction, features, price, available_from_ms,
    available_until_ms, sla, payee?}`."""
    check_fields(payload, TERM_FIELDS, OPTIONAL_FIELDS)
    terms = normalise_terms(payload, ctx.time_ms)
    payee = _payee(state, ctx, payload, ctx.sender)
    lid = next_id(state, "listing")
    listing = {
        "id": lid, "provider": ctx.member["org"], "created_by": ctx.sender, "payee": payee,
        **terms, "reserved": 0, "status": "active",
        "created_ms": ctx.time_ms, "updated_ms": ctx.time_ms, "version": 1,
    }
    state.put(listing_key(lid), listing)
    state.put(ix_provider_listing(listing["provider"], lid), None)
    return {"listing": lid}


def update(state: StateView, ctx, payload: dict) -> dict:
    """`listing_update {listing, <any term field>…, payee?}`: replaces the given terms."""
    check_fields(payload, {"listing"}, TERM_FIELDS | OPTIONAL_FIELDS)
    listing = _own(state, ctx, payload)
    if len(payload) == 1:
        raise reject("bad_payload", "listing_update needs at least one field to change")
    merged = {name: payload.get(name, listing[name]) for name in TERM_FIELDS}
    terms = normalise_terms(merged, ctx.time_ms)
    if terms["units"] < listing["reserved"]:
        raise reject("units_below_reserved", f"{listing['reserved']} units are reserved; cannot list {terms['units']}")
    listing.update(terms)
    listing["payee"] = _payee(state, ctx, payload, listing["payee"])
    listing["updated_ms"] = ctx.time_ms
    listing["version"] += 1
    state.put(listing_key(listing["id"]), listing)
    return {"listing": listing["id"], "version": listing["version"]}


def _set_status(state: StateView, ctx, payload: dict, allowed_from: str | None, to: str, code: str) -> dict:
    check_fields(payload, {"listing"})
    listing = _own(state, ctx, payload)
    if allowed_from is not None and listing["status"] != allowed_from:
        raise reject(code, f"listing {listing['id']} is {listing['status']}")
    listing["status"] = to
    listing["updated_ms"] = ctx.time_ms
    state.put(listing_key(listing["id"]), listing)
    return {"listing": listing["id"], "status": to}


def pause(state: StateView, ctx, payload: dict) -> dict:
    """`listing_pause {listing}`: no new leases until resumed; running leases continue."""
    return _set_status(state, ctx, payload, "active", "paused", "listing_not_active")


def resume(state: StateView, ctx, payload: dict) -> dict:
    """`listing_resume {listing}`."""
    return _set_status(state, ctx, payload, "paused", "active", "listing_not_paused")


def withdraw(state: StateView, ctx, payload: dict) -> dict:
    """`listing_withdraw {listing}`: final; running leases continue to their end."""
    return _set_status(state, ctx, payload, None, "withdrawn", "listing_withdrawn")


def reserve(state: StateView, listing: dict, units: int) -> None:
    available = listing["units"] - listing["reserved"]
    if units > available:
        raise reject("insufficient_units", f"listing {listing['id']} has {available} units available, not {units}")
    listing["reserved"] += units
    state.put(listing_key(listing["id"]), listing)


def release(state: StateView, listing_id: int, units: int) -> None:
    listing = state.get(listing_key(listing_id))
    listing["reserved"] = max(0, listing["reserved"] - units)
    state.put(listing_key(listing_id), listing)
