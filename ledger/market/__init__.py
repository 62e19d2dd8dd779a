"""The capacity marketplace: listings, leases, escrow, usage, settlement, attestations.

`TX_TYPES` maps each market transaction type to (roles allowed, handler);
`BEGIN_BLOCK_HOOKS` run at the start of each block for time-driven transitions.
See docs/marketplace.md for the lifecycle, payloads, error codes and settlement formula.
"""

from __future__ import annotations

from ledger.market import attestations, hooks, leases, listings, usage

OPERATOR = ("operator",)
AUDITOR = ("auditor",)

TX_TYPES: dict = {
    "listing_create": (OPERATOR, listings.create),
    "listing_update": (OPERATOR, listings.update),
    "listing_pause": (OPERATOR, listings.pause),
    "listing_resume": (OPERATOR, listings.resume),
    "listing_withdraw": (OPERATOR, listings.withdraw),
    "lease_open": (OPERATOR, leases.open_lease),
    "lease_accept": (OPERATOR, leases.accept),
    "lease_reject": (OPERATOR, leases.reject_lease),
    "lease_close": (OPERATOR, leases.close),
    "lease_settle": (OPERATOR, usage.settle_tx),
    "usage_report": (OPERATOR, usage.report),
    "usage_confirm": (OPERATOR, usage.confirm),
    "usage_dispute": (OPERATOR, usage.dispute),
    "usage_resolve": (OPERATOR, usage.resolve),
    "usage_arbitrate": (AUDITOR, usage.arbitrate),
    "attest": (AUDITOR, attestations.attest),
    "attest_revoke": (AUDITOR, attestations.revoke),
}
BEGIN_BLOCK_HOOKS: list = [hooks.begin_block]
