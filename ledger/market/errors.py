"""The market's stable error codes: every rejection a market handler can produce.

A handler fails with `reject(code, message)`; the code must be in `CODES`, so the table
below (and docs/marketplace.md, which a test compares with it) is the complete list.
Codes produced outside the market (by execution or accounts) are listed too, because a
market transaction's receipt can carry them.
"""

from __future__ import annotations

from ledger.errors import TxRejected

CODES: dict[str, str] = {
    # shape of the payload
    "bad_payload": "a field is missing, of the wrong type, out of range, or unknown",
    "bad_amount": "a price or amount is not a positive integer in minor units, or too large",
    "bad_address": "an address field is not a checksummed cx1... address (41 lower-case bech32 characters; an old cx + 40 hex form is refused with its checksummed form in the message)",
    "bad_sealed_access": "sealed_access is not bytes, or its size is outside 49..4096 bytes",
    "bad_reason": "a close or reject reason is not one of the listed reason codes",
    # listings
    "unknown_listing": "no listing with that id",
    "not_provider": "the sender is not an operator of the provider organisation",
    "bad_payee": "payee is not a member of the provider organisation",
    "listing_paused": "the listing is paused: no new leases until it is resumed",
    "listing_withdrawn": "the listing was withdrawn (final): no new leases, no changes",
    "listing_not_paused": "resume needs a paused listing",
    "listing_not_active": "pause needs an active listing",
    "listing_not_yet_available": "the listing's availability window has not started",
    "listing_expired": "the listing's availability window has ended",
    "outside_availability": "the lease would run past the end of the listing's availability window",
    "units_below_reserved": "an update would list fewer units than are reserved by leases",
    # leases
    "unknown_lease": "no lease with that id",
    "insufficient_units": "the listing has fewer unreserved units than requested",
    "price_above_max": "the listed price per unit-hour is above the tenant's max_price guard",
    "own_listing": "a tenant may not lease from its own organisation's listing",
    "attestation_missing": "a feature in require_attested has no live attestation (by attested_by, if given)",
    "insufficient_funds": "the sender's balance does not cover the lease's full price",
    "not_tenant": "only the lease's tenant may send this",
    "not_party": "only the lease's tenant or an operator of its provider may send this",
    "lease_not_pending": "the lease is not waiting for acceptance",
    "lease_not_active": "the lease is not active",
    "accept_window_closed": "the acceptance deadline has passed",
    "lease_settled": "the lease is settled (final): nothing more can change",
    "nothing_to_settle": "no confirmed usage to pay and the lease cannot be finalised yet",
    "escrow_underflow": "a payment would take more than the lease's escrow holds (a bug guard)",
    # usage and disputes
    "unknown_report": "no usage report for that lease and period",
    "bad_period": "the report is not for the lease's next period",
    "period_not_over": "the period has not ended yet (block time)",
    "report_window_closed": "usage can no longer be reported for this lease",
    "usage_exceeds_lease": "unit-hours above what the period or the lease can deliver",
    "report_not_pending": "the report is not awaiting confirmation",
    "report_not_disputed": "the report is not under dispute",
    "dispute_window_closed": "the dispute window for this report has passed",
    "bad_resolution_signer": "the counter-signer is not the other party (the tenant, or an operator of the provider)",
    "bad_resolution_signature": "the other party's signature does not cover these values (lease, period, unit-hours, "
                                "uptime, chain)",
    "arbiter_conflict": "an arbiter's organisation may not be the tenant's or the provider's",
    # attestations
    "unknown_attestation": "no attestation with that id",
    "unknown_subject": "the attested organisation or listing does not exist",
    "self_attestation": "an auditor may not attest its own organisation or its listings",
    "not_issuer": "only an auditor of the issuing organisation may revoke an attestation",
    "attestation_revoked": "the attestation was revoked already",
    "bad_expiry": "expires_ms is not after the block time",
}


def reject(code: str, message: str) -> TxRejected:
    """Build the exception for a market failure; raise the result."""
    assert code in CODES, f"unlisted market error code {code!r}"
    return TxRejected(message, code)
