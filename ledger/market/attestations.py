"""Auditor attestations: an auditor organisation's signed claim about a provider or listing.

The claim is a short string such as ``confidential:sev-snp`` or ``jurisdiction:EU``; the
transaction's signature (by an auditor-role key) is the auditor's signature of it. A
claim is live from its block until `expires_ms` (exclusive) unless revoked. An auditor may
not attest its own organisation or that organisation's listings.
"""

from __future__ import annotations

from ledger import accounts
from ledger.market.common import (
    attestation_key, bytes_field, check_fields, id_field, int_field, ix_subject_prefix, listing_key,
    next_id, text_field,
)
from ledger.market.errors import reject
from ledger.state import StateView

SUBJECT_TYPES = ("org", "listing")
MAX_TIME = 2**62


def attest(state: StateView, ctx, payload: dict) -> dict:
    """`attest {subject_type, subject, claim, evidence_digest, expires_ms}` (role auditor)."""
    check_fields(payload, {"subject_type", "subject", "claim", "evidence_digest", "expires_ms"})
    subject_type = payload["subject_type"]
    if subject_type not in SUBJECT_TYPES:
        raise reject("bad_payload", "subject_type must be 'org' or 'listing'")
    issuer = ctx.member["org"]
    if subject_type == "org":
        subject = text_field(payload, "subject")
        if accounts.org(state, subject) is None:
            raise reject("unknown_subject", f"no organisation {subject}")
        owner = subject
    else:
        subject = id_field(payload, "subject")
        listing = state.get(listing_key(subject))
        if listing is None:
            raise reject("unknown_subject", f"no listing {subject}")
        owner = listing["provider"]
    if owner == issuer:
        raise reject("self_attestation", f"{issuer} may not attest its own organisation or listings")
    claim = text_field(payload, "claim")
    evidence = bytes_field(payload, "evidence_digest", 32)
    expires_ms = int_field(payload, "expires_ms", 0, MAX_TIME)
    if expires_ms <= ctx.time_ms:
        raise reject("bad_expiry", f"expires_ms {expires_ms} is not after the block time {ctx.time_ms}")
    aid = next_id(state, "attestation")
    state.put(attestation_key(aid), {
        "id": aid, "issuer": issuer, "issued_by": ctx.sender, "subject_type": subject_type,
        "subject": subject, "claim": claim, "evidence_digest": evidence,
        "issued_ms": ctx.time_ms, "expires_ms": expires_ms, "revoked_ms": None,
    })
    state.put(ix_subject_prefix(subject_type, subject) + aid.to_bytes(8, "big"), None)
    return {"attestation": aid}


def revoke(state: StateView, ctx, payload: dict) -> dict:
    """`attest_revoke {attestation}` (role auditor, of the issuing organisation)."""
    check_fields(payload, {"attestation"})
    aid = id_field(payload, "attestation")
    att = state.get(attestation_key(aid))
    if att is None:
        raise reject("unknown_attestation", f"no attestation {aid}")
    if att["issuer"] != ctx.member["org"]:
        raise reject("not_issuer", f"attestation {aid} was issued by {att['issuer']}")
    if att["revoked_ms"] is not None:
        raise reject("attestation_revoked", f"attestation {aid} was revoked at {att['revoked_ms']}")
    att["revoked_ms"] = ctx.time_ms
    state.put(attestation_key(aid), att)
    return {"attestation": aid}


def is_live(att: dict, now_ms: int) -> bool:
    return att["revoked_ms"] is None and now_ms < att["expires_ms"]


def by_subject(state: StateView, subject_type: str, subject) -> list[dict]:
    out = []
    for key, _ in state.items(ix_subject_prefix(subject_type, subject)):
        out.append(state.get(attestation_key(int.from_bytes(key[-8:], "big"))))
    return out


def live_claims(state: StateView, listing: dict, now_ms: int) -> list[dict]:
    """Live attestations about a listing or its provider organisation, in id order."""
    atts = by_subject(state, "listing", listing["id"]) + by_subject(state, "org", listing["provider"])
    return sorted((a for a in atts if is_live(a, now_ms)), key=lambda a: a["id"])


def check_required(state: StateView, listing: dict, claims: list[str], issuers: list[str] | None, now_ms: int) -> list[int]:
    """The attestation ids backing each required claim; rejects if one has none."""
    if not claims:
        return []
    live = live_claims(state, listing, now_ms)
    used = []
    for claim in claims:
        match = [a for a in live if a["claim"] == claim and (not issuers or a["issuer"] in issuers)]
        if not match:
            by = f" by {', '.join(issuers)}" if issuers else ""
            raise reject("attestation_missing", f"no live attestation of {claim!r}{by} for listing {listing['id']}")
        used.append(match[0]["id"])
    return used
