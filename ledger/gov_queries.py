"""Read-only views of governance state for the API and the CLI: proposals with their
tally, organisations with their members and validators, chain parameters.

Pure functions of a `StateView` and the head height; nothing here writes. Values keep
their ledger types (bytes stay bytes); the API renders them as JSON.
"""

from __future__ import annotations

from ledger import accounts, governance
from ledger.crypto import address_of
from ledger.genesis_state import DEFAULT_PARAMS
from ledger.state import StateView

PROPOSAL_STATUSES = ("open", "executed", "failed", "rejected", "expired")


def _threshold(params: dict) -> tuple[int, int]:
    return params.get("gov_threshold_num", 2), params.get("gov_threshold_den", 3)


def proposal_status(proposal: dict, height: int) -> str:
    """The stored status, except an open proposal no further block may vote on is "expired"
    (the ledger refuses votes at heights above `expires_height`; the head is `height`)."""
    if proposal["status"] == "open" and height >= proposal["expires_height"]:
        return "expired"
    return proposal["status"]


def proposal_view(state: StateView, proposal: dict, height: int) -> dict:
    """A proposal with its actions, every organisation's vote and the tally against the
    current threshold (what the next vote would be counted against)."""
    num, den = _threshold(accounts.params(state))
    org_ids = [o["id"] for o in accounts.orgs(state)]
    votes = proposal["votes"]
    total = len(org_ids)
    yes = sum(1 for o in org_ids if votes.get(o) is True)
    no = sum(1 for o in org_ids if votes.get(o) is False)
    by_org = [{"org": o, "vote": {True: "yes", False: "no"}.get(votes.get(o), "none")} for o in org_ids]
    # votes of organisations removed since: shown, never counted (as in governance._tally)
    by_org += [{"org": o, "vote": ("yes" if v else "no") + " (removed org, not counted)"}
               for o, v in sorted(votes.items()) if o not in org_ids]
    out = {
        "id": proposal["id"],
        "status": proposal_status(proposal, height),
        "actions": governance.proposal_actions(proposal),
        "proposer": proposal["proposer"],
        "created_height": proposal["created_height"],
        "expires_height": proposal["expires_height"],
        "decided_height": proposal.get("decided_height"),
        "votes": by_org,
        "tally": {"yes": yes, "no": no, "not_voted": total - yes - no, "orgs": total,
                  "threshold": f"{num}/{den}", "yes_needed": -(-num * total // den)},
    }
    for k in ("reason", "error_code", "failed_action"):
        if k in proposal:
            out[k] = proposal[k]
    return out


def list_proposals(state: StateView, height: int, *, status: str | None = None, before: int | None = None,
                   limit: int = 50) -> dict:
    """Proposals newest first; `before` (an id) continues a previous page."""
    newest = state.get(b"gov/next", 1) - 1
    pid = newest if before is None else min(newest, before - 1)
    items: list[dict] = []
    while pid >= 1 and len(items) < limit:
        p = governance.get_proposal(state, pid)
        if p is not None and (status is None or proposal_status(p, height) == status):
            items.append(proposal_view(state, p, height))
        pid -= 1
    return {"items": items, "next_cursor": items[-1]["id"] if items and pid >= 1 else None}


def _validators_of(state: StateView, org_id: str | None) -> tuple[list[dict], list[dict] | None, int | None]:
    current = [v for v in accounts.validators(state) if org_id is None or v["org"] == org_id]
    pending = state.get(b"validators_next")
    if pending is None:
        return current, None, None
    upcoming = [v for v in pending["validators"] if org_id is None or v["org"] == org_id]
    return current, upcoming, pending["height"]


def org_summary(state: StateView, org: dict) -> dict:
    members = accounts.members_of(state, org["id"])
    roles = {r: sum(1 for _, m in members if m["role"] == r) for r in accounts.ROLES}
    current, _, _ = _validators_of(state, org["id"])
    return {"id": org["id"], "name": org["name"], "members": roles, "validators": len(current)}


def list_orgs(state: StateView) -> list[dict]:
    return [org_summary(state, o) for o in accounts.orgs(state)]


def org_view(state: StateView, org_id: str) -> dict | None:
    """An organisation with every member (address, role, key) and its validators; a
    validator-set change approved but not active yet shows as `validators_next`."""
    org = accounts.org(state, org_id)
    if org is None:
        return None
    members = [{"address": address, "role": m["role"], "key": m["key"]}
               for address, m in accounts.members_of(state, org_id)]
    current, upcoming, at = _validators_of(state, org_id)
    out = {"id": org["id"], "name": org["name"], "members": members,
           "validators": [{**v, "address": address_of(v["key"])} for v in current]}
    if upcoming is not None and upcoming != current:
        out["validators_next"] = {"height": at, "validators": [{**v, "address": address_of(v["key"])}
                                                               for v in upcoming]}
    return out


def params_view(state: StateView) -> dict:
    """Every chain parameter: its value, its default, and the range governance may set."""
    current = accounts.params(state)
    names = sorted(set(DEFAULT_PARAMS) | set(current))
    return {name: {"value": current.get(name, DEFAULT_PARAMS.get(name)), "default": DEFAULT_PARAMS.get(name),
                   "range": list(governance.PARAM_RANGES[name]) if name in governance.PARAM_RANGES else None}
            for name in names}
