"""Read-only views of market state for the API and CLI. Nothing here writes.

Every function takes a `StateView` (e.g. `chain.state()`). Lists are paginated by id:
pass the returned `next_cursor` back as `cursor` to get the following page; it is None
on the last page.
"""

from __future__ import annotations

from ledger import accounts
from ledger.market import attestations
from ledger.market.common import (
    attestation_key, ix_provider_lease, ix_tenant_lease, lease_key, listing_key, report_prefix,
    settlement_prefix,
)
from ledger.market.settlement import TERMINAL
from ledger.state import StateView

MAX_LIMIT = 500


def _limit(limit: int) -> int:
    return max(1, min(int(limit), MAX_LIMIT))


def _page(rows, cursor: int | None, limit: int, keep) -> dict:
    """rows: (id, item) in id order. Items with id > cursor that `keep` accepts."""
    items, last, limit = [], None, _limit(limit)
    for item_id, item in rows:
        if cursor is not None and item_id <= cursor:
            continue
        if not keep(item):
            continue
        if len(items) == limit:
            return {"items": items, "next_cursor": last}
        items.append(item)
        last = item_id
    return {"items": items, "next_cursor": None}


def _with_available(listing: dict) -> dict:
    return {**listing, "available_units": listing["units"] - listing["reserved"]}


def get_listing(state: StateView, listing_id: int, now_ms: int | None = None) -> dict | None:
    """A listing with `available_units` and its live attestations (listing or provider)."""
    listing = state.get(listing_key(listing_id))
    if listing is None:
        return None
    out = _with_available(listing)
    if now_ms is not None:
        out["attestations"] = attestations.live_claims(state, listing, now_ms)
    return out


def list_listings(
    state: StateView,
    *,
    region: str | None = None,
    jurisdiction: str | None = None,
    feature: str | list[str] | None = None,
    provider: str | None = None,
    min_vcpu_milli: int = 0,
    min_memory_mib: int = 0,
    min_storage_gib: int = 0,
    min_gpu_count: int = 0,
    gpu_model: str | None = None,
    min_units: int = 0,
    max_price: int | None = None,
    attested_by: str | list[str] | None = None,
    status: str | None = "active",
    now_ms: int | None = None,
    cursor: int | None = None,
    limit: int = 50,
) -> dict:
    """Listings matching every given filter, by id. `feature` (one or a list) must all be
    listed; `attested_by` (an org or a list) keeps listings with a live attestation by one
    of them (for each `feature` when given); `now_ms` drops listings outside their window
    and is needed for `attested_by`. `min_units` compares with available units."""
    features = [feature] if isinstance(feature, str) else list(feature or [])
    issuers = [attested_by] if isinstance(attested_by, str) else list(attested_by or [])

    def keep(listing: dict) -> bool:
        res = listing["resources"]
        if status is not None and listing["status"] != status:
            return False
        if region is not None and listing["region"] != region:
            return False
        if jurisdiction is not None and listing["jurisdiction"] != jurisdiction:
            return False
        if provider is not None and listing["provider"] != provider:
            return False
        if any(f not in listing["features"] for f in features):
            return False
        if (res["vcpu_milli"] < min_vcpu_milli or res["memory_mib"] < min_memory_mib
                or res["storage_gib"] < min_storage_gib or res["gpu_count"] < min_gpu_count):
            return False
        if gpu_model is not None and res["gpu_model"] != gpu_model:
            return False
        if listing["units"] - listing["reserved"] < min_units:
            return False
        if max_price is not None and listing["price"] > max_price:
            return False
        if now_ms is not None and not listing["available_from_ms"] <= now_ms < listing["available_until_ms"]:
            return False
        if issuers:
            live = [a for a in attestations.live_claims(state, listing, now_ms or 0) if a["issuer"] in issuers]
            if not live or any(not any(a["claim"] == f for a in live) for f in features):
                return False
        return True

    rows = ((int.from_bytes(k[-8:], "big"), _with_available(v)) for k, v in state.items(b"mkt/l/"))
    return _page(rows, cursor, limit, keep)


def get_lease(state: StateView, lease_id: int) -> dict | None:
    """A lease with its usage reports and settlement records, in order."""
    lease = state.get(lease_key(lease_id))
    if lease is None:
        return None
    return {
        **lease,
        "reports": [v for _, v in state.items(report_prefix(lease_id))],
        "settlement_records": [v for _, v in state.items(settlement_prefix(lease_id))],
    }


def list_leases(
    state: StateView,
    *,
    tenant: str | None = None,
    provider: str | None = None,
    status: str | None = None,
    cursor: int | None = None,
    limit: int = 50,
) -> dict:
    """Leases of a tenant (address) or of a provider organisation (one of the two)."""
    if (tenant is None) == (provider is None):
        raise ValueError("give exactly one of tenant or provider")
    prefix = ix_tenant_lease(tenant, 0)[:-8] if tenant is not None else ix_provider_lease(provider, 0)[:-8]
    ids = [int.from_bytes(k[-8:], "big") for k, _ in state.iter_raw(prefix)]
    rows = ((i, state.get(lease_key(i))) for i in ids)
    return _page(rows, cursor, limit, lambda lease: status is None or lease["status"] == status)


def list_attestations(
    state: StateView, subject_type: str, subject, *, now_ms: int | None = None, include_inactive: bool = True
) -> list[dict]:
    """Attestations about an organisation (`"org"`, org id) or listing (`"listing"`, id).
    With `now_ms` each gets `live`; `include_inactive=False` keeps only live ones."""
    out = []
    for att in attestations.by_subject(state, subject_type, subject):
        if now_ms is not None:
            att = {**att, "live": attestations.is_live(att, now_ms)}
            if not include_inactive and not att["live"]:
                continue
        out.append(att)
    return out


def get_attestation(state: StateView, attestation_id: int) -> dict | None:
    return state.get(attestation_key(attestation_id))


def account_view(state: StateView, address: str) -> dict:
    """Balance, next nonce, membership, and the escrow held for leases it opened."""
    held, open_leases = 0, []
    for key, _ in state.iter_raw(ix_tenant_lease(address, 0)[:-8]):
        lease = state.get(lease_key(int.from_bytes(key[-8:], "big")))
        if lease["status"] not in TERMINAL:
            held += lease["escrow"]
            open_leases.append(lease["id"])
    return {
        "address": address,
        "balance": accounts.balance(state, address),
        "nonce": accounts.next_nonce(state, address),
        "member": accounts.member(state, address),
        "escrow_as_tenant": held,
        "open_leases": open_leases,
    }


def market_totals(state: StateView) -> dict:
    """Sum of every lease's escrow (equals `escrow_total` when the market is the only
    escrow user) and reserved units per listing — what the invariant checks read."""
    escrow = sum(v["escrow"] for _, v in state.items(b"mkt/ls/"))
    reserved = {int.from_bytes(k[-8:], "big"): v["reserved"] for k, v in state.items(b"mkt/l/")}
    return {"lease_escrow": escrow, "escrow_total": accounts.escrow_total(state), "reserved": reserved}


__all__ = [
    "get_listing", "list_listings", "get_lease", "list_leases", "list_attestations",
    "get_attestation", "account_view", "market_totals",
]
