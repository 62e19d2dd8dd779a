"""Heartbeat blocks: when a block without transactions is due.

Time-driven state (lease acceptance deadlines and ends, usage dispute windows, the end
of a lease's report window, pending validator-set changes) moves only when a block is
executed. So that it never waits for traffic, an empty block is allowed, and proposed
by an honest primary, exactly when it does something or the chain has been quiet for
`heartbeat_interval_ms` (like CometBFT's `create_empty_blocks_interval`):

* ``due_transition``: the earliest item of the market's due index
  (ledger/market/common.py) lies at or before the block time, so the begin-block hook
  of this block runs it;
* ``validator_activation``: a validator-set change is pending (state key
  ``validators_next``); it installs at the end of block ``validators_next.height - 1``,
  so every block until then is needed;
* ``interval``: ``heartbeat_interval_ms`` > 0 and block time - parent time >= it.

Pure and deterministic: the inputs are the committed state after the parent block, the
parent's time and the candidate block's time; never a clock. Proposers use
`next_due_ms` to set a timer; replicas refuse an empty block for which `due_reason` is
None (ledger/chain.py, code ``empty_block_not_due``), so a byzantine primary cannot make
empty blocks at will: at most one per interval, plus the ones that run transitions.
"""

from __future__ import annotations

from ledger import accounts
from ledger.genesis_state import DEFAULT_PARAMS
from ledger.market.common import earliest_due_ms
from ledger.state import StateView

DUE_TRANSITION = "due_transition"
VALIDATOR_ACTIVATION = "validator_activation"
INTERVAL = "interval"
REASONS = (DUE_TRANSITION, VALIDATOR_ACTIVATION, INTERVAL)  # checked in this order

DEFAULT_INTERVAL_MS = DEFAULT_PARAMS["heartbeat_interval_ms"]  # 60 s; 0 would mean no interval heartbeats
PENDING_VALIDATORS_KEY = b"validators_next"  # written by ledger.governance


def interval_ms(params: dict) -> int:
    """The chain's `heartbeat_interval_ms` (0: heartbeats only for transitions)."""
    return params.get("heartbeat_interval_ms", DEFAULT_INTERVAL_MS)


def _check_time(value, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer of ms since the epoch, got {value!r}")
    return value


def due_reason(state: StateView, parent_time_ms: int, time_ms: int) -> str | None:
    """Why an empty block at `time_ms` on top of this state is due, or None if it is not.

    `state` is the committed state after the parent block, `parent_time_ms` that block's
    time (the genesis time at height 1). `time_ms` must be after `parent_time_ms`.
    """
    parent_time_ms = _check_time(parent_time_ms, "parent_time_ms")
    time_ms = _check_time(time_ms, "time_ms")
    if time_ms <= parent_time_ms:
        raise ValueError(f"block time {time_ms} is not after the parent's {parent_time_ms}")
    due = earliest_due_ms(state)
    if due is not None and due <= time_ms:
        return DUE_TRANSITION
    if state.get_raw(PENDING_VALIDATORS_KEY) is not None:
        return VALIDATOR_ACTIVATION
    interval = interval_ms(accounts.params(state))
    if interval > 0 and time_ms - parent_time_ms >= interval:
        return INTERVAL
    return None


def next_due_ms(state: StateView, parent_time_ms: int) -> int | None:
    """The earliest block time at which an empty block is due on top of this state, or
    None if none ever will be (no due item, no pending change, interval 0). For every
    t > parent_time_ms: ``due_reason(state, parent_time_ms, t) is not None`` exactly
    when this is not None and t >= it."""
    parent_time_ms = _check_time(parent_time_ms, "parent_time_ms")
    first = parent_time_ms + 1
    candidates = []
    due = earliest_due_ms(state)
    if due is not None:
        candidates.append(max(due, first))
    if state.get_raw(PENDING_VALIDATORS_KEY) is not None:
        candidates.append(first)
    interval = interval_ms(accounts.params(state))
    if interval > 0:
        candidates.append(parent_time_ms + interval)
    return min(candidates) if candidates else None


__all__ = ["DEFAULT_INTERVAL_MS", "DUE_TRANSITION", "INTERVAL", "REASONS", "VALIDATOR_ACTIVATION",
           "due_reason", "interval_ms", "next_due_ms"]
