"""Heartbeat blocks on the proposer side: a mixin of `node.runner.Runner`.

With no transaction to propose, the primary proposes an empty block only once the
chain's rule says one is due (ledger/heartbeat.py), and until then keeps one timer for
the earliest time one will be (`Chain.next_heartbeat_ms`), at most
`HEARTBEAT_RECHECK_MS` ahead so a step of the wall clock is noticed. The timer comes
back through the runner's queue as `_HeartbeatCheck`; a proposal, a commit, stop and halt
cancel it. Replicas check the same rule from the block header, so this node's clock
decides only when a heartbeat is proposed, never whether it is valid.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from consensus import effects as fx

HEARTBEAT_RECHECK_MS = 60_000  # longest heartbeat timer: a far due time is re-checked against the clock


@dataclass(frozen=True, slots=True)
class _HeartbeatCheck:
    """Internal runner event: time to look again whether a heartbeat block is due."""


class HeartbeatProposer:
    """Uses the runner's `chain`, `clock_ms`, `queue`, `signer`, `last_cert`, `log`,
    `_heartbeat_timer` and `_propose(req, block, result)`."""

    def _maybe_heartbeat(self, req: fx.RequestProposal) -> None:
        """No tx ready: propose an empty block if one is due now, else time the next check."""
        time_ms = max(self.clock_ms(), self.chain.head.time_ms + 1)  # as build_block stamps it
        reason = self.chain.heartbeat_due(time_ms)
        if reason is None:
            self._arm_heartbeat()
            return
        block, result = self.chain.build_block(
            [], time_ms=time_ms, view=req.view, proposer=self.signer.public_key, last_cert=self.last_cert)
        self.log.info("proposing heartbeat block %d (%s)", block.height, reason)
        self._propose(req, block, result)

    def _arm_heartbeat(self) -> None:
        """One timer, for the earliest time an empty block will be due on top of the head
        (none if none ever will be); a check that finds it early just sets it again."""
        if self._heartbeat_timer is not None:
            return
        due = self.chain.next_heartbeat_ms()
        if due is None:
            return
        delay_ms = min(max(due - self.clock_ms(), 0) + 1, HEARTBEAT_RECHECK_MS)
        self._heartbeat_timer = asyncio.get_running_loop().call_later(
            delay_ms / 1000, self.queue.put_nowait, _HeartbeatCheck())

    def _cancel_heartbeat(self) -> None:
        if self._heartbeat_timer is not None:
            self._heartbeat_timer.cancel()
            self._heartbeat_timer = None
