"""The begin-block hook: run every time-driven transition that is due at the block time.

Due items come from the time-ordered index (see `common.due_items`), oldest first, so
every replica applies the same transitions in the same order; each item is removed as
it is run.
"""

from __future__ import annotations

from ledger.market import leases, usage
from ledger.market.common import DUE_ACCEPT, DUE_END, DUE_FINAL, DUE_REPORT, due_items, lease_key, unschedule
from ledger.market.settlement import try_finalise
from ledger.state import StateView


def begin_block(state: StateView, bctx) -> None:
    for time_ms, kind, lease_id, period in due_items(state, bctx.time_ms):
        unschedule(state, time_ms, kind, lease_id, period)
        lease = state.get(lease_key(lease_id))
        if lease is None:  # cannot happen: leases are never deleted
            continue
        if kind == DUE_ACCEPT:
            leases.expire(state, lease, bctx)
        elif kind == DUE_END:
            leases.end(state, lease, bctx)
        elif kind == DUE_REPORT:
            usage.auto_confirm(state, lease, period, bctx)
        elif kind == DUE_FINAL:
            if lease["status"] in ("ended", "closed"):
                try_finalise(state, lease, (bctx.time_ms, bctx.height, None))
