"""Suspecting a primary that keeps the chain moving but not for everyone, and retrying a
commit the node refused. A mixin of `consensus.core.Replica` (pure, like the rest).

The progress timer of the core only fires when a height does not advance. Two byzantine
primaries slip past it (docs/consensus.md §4, "Liveness under one byzantine validator"):

* A *censoring* primary proposes blocks, but never a certain sender's transactions. The
  node reports in `PendingTxs.oldest` the oldest transaction any honest primary could
  propose now (first of its sender's ready run, fits a block, not expired). If the same
  one is still the oldest after a full timeout under the same primary, with a block it
  saw that primary propose committed meanwhile, the replica first re-gossips it (`ResendTx`: the primary may never
  have received it) and waits one more timeout with another block committed; then it
  asks for a view change. One "censor" timer is outstanding at a time.
* A *slow* primary proposes just before the progress timeout, every time. Each height at
  which the replica holds pending transactions and no PrePrepare has arrived after
  `slow_proposal_ms` (default half the view timeout) is a strike against the primary of
  that view, counted when the PrePrepare comes, unless f+1 others had prepared it by then
  (the slow link was ours); `SLOW_STRIKES` strikes in one view and it is replaced. Strikes are not
  forgiven for heights proposed in time: a primary late every other height would
  otherwise still cut the chain's speed by half or more for its whole turn.

Both only ever start a view change, which costs liveness, never safety; a replica that
asks alone does not stop the others (rule F brings it back at the next height).
"""

from __future__ import annotations

from consensus.effects import ResendTx, ScheduleTimeout
from consensus.events import CommitFailed, TimeoutFired

SLOW_STRIKES = 3  # late proposals by one primary in one view before it is replaced


class PrimaryWatch:
    """State and handlers; `Replica` calls `_init_watch()` in its constructor."""

    def _init_watch(self) -> None:
        self.oldest: bytes | None = None  # PendingTxs.oldest, as last reported
        self.censor_armed = False
        self.censor_watch: tuple[bytes, bytes, int, bool] | None = None  # (tx, primary, height, resent)
        self.proposed_at = 0  # the last height at which we accepted a PrePrepare (saw a proposal live)
        self.slow_strikes: tuple[bytes, int, int] = (b"", -1, 0)  # (primary, view, strikes)
        self.late: tuple[int, int] | None = None  # (view, height) whose PrePrepare missed its deadline
        self.commit_retry: tuple[int, int] = (0, 0)  # (height, refusals at it)

    # -- censorship ---------------------------------------------------------------------

    def _arm_censor(self, out: list) -> None:
        if self.n == 1 or self.censor_armed or self.oldest is None:
            return
        self.censor_armed = True
        pen = self.primary(self.view, self.height)
        w = self.censor_watch
        if w is None or w[0] != self.oldest or w[1] != pen:
            self.censor_watch = (self.oldest, pen, self.height, False)
        out.append(ScheduleTimeout("censor", self.view, self.height, self._timeout()))

    def _on_censor_timeout(self, out: list) -> None:
        self.censor_armed = False
        w = self.censor_watch
        pen = self.primary(self.view, self.height)
        if w is None or w[0] != self.oldest or w[1] != pen or pen == self.me or self.changing:
            # another tx is the oldest now, or the pen moved: a new primary gets a full timeout
            self.censor_watch = None
            self._arm_censor(out)
            return
        tx, _, since, resent = w
        if since <= self.proposed_at < self.height and self.deciding is None and self.behind is None:
            # The primary proposed a block we saw and that is now committed, without this
            # tx. (No block at all is the progress timer's case; blocks we only fetched,
            # catching up, say nothing about what the primary had when it proposed.)
            if not resent:
                self.censor_watch = (tx, pen, self.height, True)
                out.append(ResendTx(tx))
            else:
                self.censor_watch = None
                self._start_view_change(self.view + 1, out)
                return
        self._arm_censor(out)

    def _note_proposal(self) -> None:
        """Called as a PrePrepare is accepted (from `_arm_progress`)."""
        if self.pp is not None and self.pp.height == self.height:
            self.proposed_at = self.height

    # -- slowness --------------------------------------------------------------------------

    def _arm_slow(self, out: list) -> None:
        """With the progress timer of (view, height): a deadline for the PrePrepare."""
        if self.pp is None and self.pending > 0 and self.primary(self.view, self.height) != self.me:
            after = self.config.slow_proposal_ms or self.config.view_timeout_ms // 2
            out.append(ScheduleTimeout("slow", self.view, self.height, after))

    def _on_slow_timeout(self, ev: TimeoutFired, out: list) -> None:
        if ((ev.view, ev.height) != (self.view, self.height) or not self._active() or self.pp is not None
                or self.pending == 0 or self.behind is not None):
            return  # proposed (or decided) in time, or not the primary's fault
        if self.faults.fixed_progress_timer:
            self._strike(ev.view, ev.height, out)
        else:
            self.late = (ev.view, ev.height)  # judged when the PrePrepare comes (`_judge_late`)

    def _judge_late(self, pp, out: list) -> bool:
        """The PrePrepare of a (view, height) whose deadline passed has come. A strike,
        unless f+1 validators other than us and the primary had prepared it before it
        reached us: then at least one honest replica had it in time, and the slow link
        was ours (one TCP stream in retransmission backoff), not a slow primary. If it
        never comes the progress timer deals with the primary; if the height is decided
        without it, others had it. True if the strike started a view change."""
        if self.late != (pp.view, pp.height):
            return False
        self.late = None
        votes = self.prepares.get((pp.view, pp.block_hash), {})
        if len(votes) - (self.me in votes) > self.f:
            return False
        return self._strike(pp.view, pp.height, out)

    def _strike(self, view: int, height: int, out: list) -> bool:
        pen = self.primary(view, height)
        prev_pen, prev_view, strikes = self.slow_strikes
        strikes = strikes + 1 if (prev_pen, prev_view) == (pen, view) else 1
        self.slow_strikes = (pen, view, strikes)
        if strikes >= SLOW_STRIKES:
            self._start_view_change(self.view + 1, out)
            return True
        return False

    # -- a commit the node refused ------------------------------------------------------------

    def _on_commit_failed(self, ev: CommitFailed, out: list) -> None:
        if ev.height != self.height or self.deciding != ev.block_hash:
            return
        self.deciding = None  # no Committed will come: do not wait for it forever
        height, tries = self.commit_retry
        tries = tries + 1 if height == self.height else 1
        self.commit_retry = (self.height, tries)
        after = min(self.config.view_timeout_ms << min(tries - 1, 30), self.config.max_timeout_ms)
        out.append(ScheduleTimeout("commit", self.view, self.height, after))

    def _on_commit_retry(self, ev: TimeoutFired, out: list) -> None:
        if ev.height == self.height and self.deciding is None:
            self._check_committed(out)  # decides again from the commits held (or fetches)
