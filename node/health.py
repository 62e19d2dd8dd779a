"""Is this node fit to serve, and if not, why: pure functions of numbers the node already
has (its status), so the verdict is the same in `GET /health`, `GET /v1/status`, the
stall warning in the log and the tests.

Stalled reasons (status `stalled_reason`):

* ``no_quorum``: this node and the validators it has a live session with are fewer than
  a quorum, so no block can be certified through it.
* ``view_changes``: the validators keep changing views (at least `STALL_VIEW_CHANGES`
  since the last commit) without committing: primaries fail one after another.

Health reasons (`GET /health`): ``no_peers`` (a network of several validators and no
live session; for a full node, no session to any peer it follows), ``no_quorum``, ``behind`` (catching up with blocks fetched from peers),
``stalled`` (``view_changes`` above), ``duplicate_key`` (a peer replaced our session with
a newer one from our own node key: another process runs with it, and this node has stopped
signing until restarted).
"""

from __future__ import annotations

from dataclasses import dataclass

STALL_VIEW_CHANGES = 3          # view changes without a commit before the node says it is stalled
STALL_LOG_EVERY_MS = 30_000     # how often the stall warning repeats while it lasts
STALL_GRACE_MS = 5_000          # a stall must last this long before it is logged (peers connecting at start)

READY = "ready"
DEGRADED = "degraded"

_MESSAGES = {
    "no_peers": "no live session with any other validator",
    "no_quorum": "this node and its connected validators are fewer than a quorum: no block can commit",
    "behind": "catching up: applying blocks fetched from peers",
    "stalled": "views keep changing without a commit",
    "duplicate_key": "another process runs with this node's key: this node has stopped signing; "
                     "stop one of them and restart the other",
}


_STALLED = {
    "no_quorum": "this node and its connected validators are fewer than a quorum",
    "view_changes": "views keep changing without a commit",
}


def describe(reason: str) -> str:
    """A stalled reason in words, for the log."""
    return _STALLED.get(reason, reason)


def quorum_of(n: int) -> int:
    """Votes needed among n validators (ledger.block.quorum, repeated to stay import-free)."""
    f = (n - 1) // 3
    return -(-(n + f + 1) // 2)


def stalled_reason(*, validators: int, connected_validators: int, is_validator: bool,
                   views_since_commit: int) -> str | None:
    """Why the chain cannot move through this node, or None."""
    if validators > 1:
        have = connected_validators + (1 if is_validator else 0)
        if have < quorum_of(validators):
            return "no_quorum"
    if views_since_commit >= STALL_VIEW_CHANGES:
        return "view_changes"
    return None


def assess(status: dict) -> dict:
    """The health verdict of a `/v1/status` document: ``{"status": "ready"|"degraded",
    "reasons": [{"code", "message"}]}``. Reads only `validators`, `peers_connected`,
    `catching_up`, `stalled_reason`, `duplicate_key` and `role` (a full node has no quorum
    to lose: only ``no_peers`` and ``behind`` apply to it, and its node sets no stalled
    reason)."""
    codes: list[str] = []
    n = len(status.get("validators") or [])
    full = status.get("role") == "full"
    if (n > 1 or full) and not status.get("peers_connected"):
        codes.append("no_peers")
    reason = status.get("stalled_reason")
    if reason == "no_quorum":
        codes.append("no_quorum")
    if status.get("catching_up"):
        codes.append("behind")
    if reason == "view_changes":
        codes.append("stalled")
    if status.get("duplicate_key"):
        codes.append("duplicate_key")
    return {"status": DEGRADED if codes else READY,
            "reasons": [{"code": c, "message": _MESSAGES[c]} for c in codes]}


@dataclass
class StallNotice:
    """When to log about a stall: once it has lasted `grace_ms` (so peers still connecting
    at start are not a stall), at once when its reason changes, again every `every_ms`
    while it lasts, and once when it is over (if it was logged)."""

    every_ms: int = STALL_LOG_EVERY_MS
    grace_ms: int = STALL_GRACE_MS
    reason: str | None = None          # the reason last logged
    _last_ms: int | None = None
    _since_ms: int | None = None       # when the current stall began

    def check(self, reason: str | None, now_ms: int) -> tuple[str, str] | None:
        """("stalled", reason) or ("recovered", old reason) to log now, else None."""
        if reason is None:
            self._since_ms = None
            if self.reason is None:
                return None
            old, self.reason, self._last_ms = self.reason, None, None
            return ("recovered", old)
        if self._since_ms is None:
            self._since_ms = now_ms
        if self.reason is None and now_ms - self._since_ms < self.grace_ms:
            return None
        if reason != self.reason or self._last_ms is None or now_ms - self._last_ms >= self.every_ms:
            self.reason, self._last_ms = reason, now_ms
            return ("stalled", reason)
        return None


__all__ = ["assess", "describe", "stalled_reason", "quorum_of", "StallNotice", "STALL_VIEW_CHANGES", "READY", "DEGRADED"]
