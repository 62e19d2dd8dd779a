"""Heartbeat blocks on the proposer side: a mixin of `node.runner.Runner`.

With no transaction to propose, the primary proposes an empty block only once the
chain's rule says one is due (ledger/heartbeat.py), and until then keeps one timer for
the earliest time one will be (`Chain.next_heartbeat_ms`), at most
`HEARTBEAT_RECHECK_MS` ahead so a step of the wall clock is noticed. The timer comes
back through the runner's queue as `_HeartbeatCheck`; a proposal, a commit, stop and halt
cancel it. Replicas check the same rule from the block header, so this node's clock
decides only when a heartbeat is proposed, never whether it is valid.

Every validator also watches for a heartbeat that is owed and not coming (a crashed or
silent primary on a quiet chain): one timer per height for the due time plus
`time_skew_ms` (the clock slack a primary is allowed). When it fires with the head
unchanged, the owed block counts as one pending transaction (`_pending_event`), so the
consensus core's progress timer runs and, if no block comes within `view_timeout_ms`, a
view change replaces the primary as for a censored transaction. Healthy networks never
reach it: the heartbeat commits before its due time plus the slack.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from consensus import effects as fx

HEARTBEAT_RECHECK_MS = 60_000  # longest heartbeat timer: a far due time is re-checked against the clock


@dataclass(frozen=True, slots=True)
class _HeartbeatCheck:
    """Internal runner event: time to look again whether a heartbeat block is due."""


@dataclass(frozen=True, slots=True)
class _HeartbeatOverdue:
    """Internal runner event: time to look whether a due heartbeat block is overdue."""

    height: int  # the head when the watch was set: a commit since makes it moot


class HeartbeatProposer:
    """Uses the runner's `chain`, `clock_ms`, `queue`, `signer`, `last_cert`, `log`,
    `mempool`, `_heartbeat_timer`, `_overdue_timer`, `heartbeat_owed`, `_feed`,
    `_pending_event()` and `_propose(req, block, result)`."""

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
        if due is not None:
            self._heartbeat_timer = self._timer_at(due, _HeartbeatCheck())

    def _timer_at(self, at_ms: int, event) -> asyncio.TimerHandle:
        """Queue `event` just after this node's clock reaches `at_ms`, or in
        HEARTBEAT_RECHECK_MS if that is sooner (a far time is looked at again)."""
        delay_ms = min(max(at_ms - self.clock_ms(), 0) + 1, HEARTBEAT_RECHECK_MS)
        return asyncio.get_running_loop().call_later(delay_ms / 1000, self.queue.put_nowait, event)

    def _cancel_heartbeat(self) -> None:
        if self._heartbeat_timer is not None:
            self._heartbeat_timer.cancel()
            self._heartbeat_timer = None

    # the watch for an owed heartbeat that does not come (every validator) ------------------
    def _arm_overdue(self) -> None:
        """One timer per head: due time + time_skew_ms, at most HEARTBEAT_RECHECK_MS ahead."""
        self._cancel_overdue()
        owed_at = self._heartbeat_owed_at()
        if owed_at is not None:
            self._overdue_timer = self._timer_at(owed_at, _HeartbeatOverdue(self.chain.height))

    def _heartbeat_owed_at(self) -> int | None:
        """When a heartbeat due on top of the head counts as overdue: its due time plus the
        clock slack a primary is allowed (time_skew_ms); None if none will be due."""
        due = self.chain.next_heartbeat_ms()
        return None if due is None else due + self.chain.params.get("time_skew_ms", 2000)

    def _cancel_overdue(self) -> None:
        if self._overdue_timer is not None:
            self._overdue_timer.cancel()
            self._overdue_timer = None

    def _on_heartbeat_overdue(self, item: _HeartbeatOverdue) -> None:
        self._overdue_timer = None
        if item.height != self.chain.height or self.heartbeat_owed:
            return  # a block came meanwhile (its commit set a new watch), or already counted
        owed_at = self._heartbeat_owed_at()
        if owed_at is None:
            return
        if self.clock_ms() < owed_at:
            self._arm_overdue()  # a far due time: the timer was capped, look again later
            return
        self.heartbeat_owed = True
        self.log.info("heartbeat block %d has not come %d ms after it was owed: counting it as pending work, so "
                      "a silent primary is replaced", self.chain.height + 1, self.clock_ms() - owed_at)
        self._feed(self._pending_event())
