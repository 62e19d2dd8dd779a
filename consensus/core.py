"""The PBFT replica: a pure state machine, `on_event(event) -> list[Effect]`.

One block is in flight at a time and the sequence number is the block height. The view
is carried across heights; the primary of view v at height h is
validators[(v + (h-1)//R) mod n] (see `primary_index`). Normal case: PrePrepare ->
validate -> Prepare; pre-prepare + q-1 prepares = prepared -> Commit; q matching
commits (any view, this height) = a Certificate -> CommitBlock, q = ledger.block.quorum(n)
= ceil((n+f+1)/2) (2f+1 when n = 3f+1). See docs/consensus.md.
"""

from __future__ import annotations

from ledger.block import Certificate, quorum
from ledger.crypto import Signer
from ledger.encoding import sha256
from ledger.errors import BlockInvalid

from consensus import proofs
from consensus.bookkeeping import CommitTally, FutureBuffer, SeenLog
from consensus.effects import (
    Broadcast, CommitBlock, Evidence, FetchBlocks, PersistSigned, RequestProposal, ScheduleTimeout,
    Send, ValidateBlock,
)
from consensus.events import (
    BlockVerdict, CommitFailed, Committed, FetchedBlock, MessageReceived, PeerConnected, PendingTxs,
    ProposalReady, Tick,
    TimeoutFired,
)
from consensus.liveness import PrimaryWatch
from consensus.messages import (
    Commit, NewView, Prepare, PreparedCert, PrePrepare, ViewChange, make_commit, make_new_view,
    make_prepare, make_preprepare, make_view_change, signed_bytes,
)
from consensus.state import ConsensusConfig, Faults, SignedState, primary_index


MAX_HELPS = 8  # catch-up answers per peer and height
# Stages of visible progress at one (view, height) that restart its progress timer, each
# at most once: the primary's PrePrepare found valid, and f+1 matching Prepares from
# validators other than this one and the primary (an honest one accepted the proposal).
# So a (view, height) lasts at most (1 + len(EXTENSIONS)) timeouts, plus one for a
# reconnect, before this replica asks for a view change, whatever the primary drips.
EXTENSIONS = ("pp", "prepares")
# After a height that needed a view change at this replica, the next heights start at a
# doubled timeout (2T) until this many in a row commit without one: on a network where a
# height takes about T (seconds of TCP backoff at 20 % loss) a view change per height
# otherwise follows, each costing more than the height. A crashed primary then costs 2T
# instead of T, only in such a stretch.
STEADY_HEIGHTS = 8


class Replica(PrimaryWatch):
    def __init__(self, chain_id: str, signer: Signer, validators: tuple[bytes, ...], height: int,
                 config: ConsensusConfig = ConsensusConfig(), signed_state: SignedState | None = None,
                 faults: Faults = Faults(), last_certificate: Certificate | None = None):
        self.chain_id = chain_id
        self.signer = signer
        self.me = signer.public_key
        self.config = config
        self.faults = faults
        self._set_validators(tuple(validators))
        self.height = height
        if faults.forget_signed_on_restart:
            signed_state = None
        rec = signed_state or SignedState()
        self.rec = rec
        self.view = rec.current_view
        self.changing = rec.changing  # sent ViewChange(self.view), NewView not yet accepted
        self.nv_height, self.nv_hash = rec.nv_height, rec.nv_hash
        self.prepared: PreparedCert | None = rec.prepared if rec.prepared and rec.prepared.height == height else None
        self.pending = 0
        self.failed_views = 0
        self.unsteady = 0  # heights left to start at 2T (a recent height needed a view change)
        self.vc_latest: dict[bytes, ViewChange] = {}  # per sender, its latest (lch, view) ViewChange
        self.deferred_nv: NewView | None = None  # a lower-height NewView put off by rule R2
        self.new_view_msg: NewView | None = None  # proof of the current view, for laggards
        self.last_cert = last_certificate  # of height-1: handed to peers that fall behind
        self.future = FutureBuffer(config.max_buffered, config.max_buffered_bytes)
        self.fetching = False
        self.fetches = 0
        self.seen = SeenLog()  # equivocation detection
        self._init_watch()
        # Generation of the progress timer, never reset: re-arming bumps it, and a progress
        # timeout of an older generation at the current (view, height) is stale (ignored).
        self.progress_gen = 0
        self._reset_height()

    # -- bookkeeping ----------------------------------------------------------------

    def _set_validators(self, validators: tuple[bytes, ...]) -> None:
        self.validators = validators
        self.vset = frozenset(validators)
        self.n = len(validators)
        self.f = (self.n - 1) // 3
        self.q = quorum(self.n)

    def _reset_height(self) -> None:
        self.pp: PrePrepare | None = None  # accepted pre-prepare at (view, height)
        self.blocks: dict[bytes, bytes] = {}
        self.valid: set[bytes] = set()
        # Invalid verdicts and validations in flight, with the view they were asked in: an
        # invalid verdict holds for that view only (a block whose time was ahead of our
        # clock may be valid by the next view, when a new primary re-proposes it).
        self.invalid: dict[bytes, int] = {}
        self.validating: dict[bytes, int] = {}
        self.prepares: dict[tuple[int, bytes], dict[bytes, Prepare]] = {}
        self.commits = CommitTally()
        self.deciding: bytes | None = None
        self.armed: set[tuple[int, int]] = set()
        # `rearmed` caps re-arming the progress timer to once per (view, height), so a
        # flapping peer cannot postpone a view change for ever.
        self.rearmed: set[tuple[int, int]] = set()
        self.extended: set[tuple[int, int, str]] = set()  # (view, height, stage) that restarted the timer
        self.requested: tuple[int, int] | None = None
        self.helped: dict[tuple[str, bytes], tuple[int, int]] = {}  # (kind, peer) -> (last view, times)
        self.behind: bytes | None = None  # a peer that showed us we are behind at this height
        self.waited = False  # gave catch-up one more timeout instead of suspecting the primary

    def primary(self, view: int, height: int) -> bytes:
        return self.validators[primary_index(view, height, self.n, self.config.rotation_blocks)]

    def _active(self) -> bool:
        return not self.changing and self.deciding is None

    def _timeout(self) -> int:
        return min(self.config.view_timeout_ms << min(self.failed_views, 30), self.config.max_timeout_ms)

    def _can_sign(self, height: int, view: int, phase: str, digest: bytes) -> bool:
        rec = self.rec
        if (height, view) != (rec.height, rec.view):
            return (height, view) > (rec.height, rec.view)
        prev = rec.signed(phase)
        return prev is None or prev == digest

    def _sign(self, out: list, height: int, view: int, items: list[tuple[str, bytes]]) -> bool:
        """Record what we are about to sign at (height, view); refuse anything that would
        conflict with what was signed there before. Emits PersistSigned before the caller
        emits the message."""
        if not all(self._can_sign(height, view, p, d) for p, d in items):
            return False
        phases = self.rec.phases if (height, view) == (self.rec.height, self.rec.view) else ()
        rec = SignedState(height, view, phases + tuple(p for p in items if p not in phases), self.view,
                          self.changing, self.nv_height, self.nv_hash, self.prepared)
        if rec != self.rec:
            out.append(PersistSigned(rec))
            self.rec = rec
        return True

    def _persist_view(self, out: list) -> None:
        """Persist a change of the view we are in (no new signature)."""
        rec = self.rec
        new = SignedState(rec.height, rec.view, rec.phases, self.view, self.changing, self.nv_height,
                          self.nv_hash, self.prepared)
        if new != rec:
            out.append(PersistSigned(new))
            self.rec = new

    def _current_vcs(self, above: int) -> list[int]:
        """Views > `above` that other validators ask for about our current height (or later),
        highest first. ViewChanges about heights we have passed are moot (rule F)."""
        return sorted((x.new_view for s, x in self.vc_latest.items()
                       if s != self.me and x.new_view > above and x.last_committed_height >= self.height - 1),
                      reverse=True)

    def _seen(self, key: tuple, digest: bytes, msg, out: list) -> bool:
        """True (and evidence once) if the sender signed something else at this position."""
        conflict, earlier = self.seen.check(key, digest, msg)
        if earlier is not None:
            out.append(Evidence("equivocation", msg.sender, earlier, msg))
        return conflict

    def _fetch(self, out: list, hint: bytes | None) -> None:
        if hint is not None:
            self.behind = hint
        if self.fetching:
            return
        self.fetching = True
        self.fetches += 1
        out.append(FetchBlocks(self.height, hint))
        out.append(ScheduleTimeout("fetch", self.view, self.height, self.config.view_timeout_ms))

    def _arm_progress(self, out: list) -> None:
        self._note_proposal()
        if self.n == 1 or not self._active():
            return
        key = (self.view, self.height)
        if key not in self.armed:
            self.armed.add(key)
            out.append(ScheduleTimeout("progress", self.view, self.height, self._timeout(), self.progress_gen))
            self._arm_slow(out)

    def _rearm_progress(self, out: list) -> None:
        """Time progress at this (view, height) from now: after a partition heals the timer
        armed before it is stale (it would fire a view change moments after the reconnect
        resent everyone's state). Once per (view, height); only a running timer is re-armed."""
        key = (self.view, self.height)
        if key not in self.armed or key in self.rearmed or self.changing:
            return
        self.rearmed.add(key)
        self.progress_gen += 1
        out.append(ScheduleTimeout("progress", self.view, self.height, self._timeout(), self.progress_gen))

    def _extend_progress(self, stage: str, out: list) -> None:
        """Progress is visible at this (view, height) (`stage`, one of EXTENSIONS): time it
        from now. Under loss one TCP stream can sit in retransmission backoff for seconds,
        so a big PrePrepare arrives after most of the timeout although the height is
        moving; replacing that primary costs a view change and gains nothing. Once per
        stage and (view, height), and only a running timer: the bound on a primary that
        drips its proposal and votes out just before each deadline (docs/consensus.md §3)."""
        key = (self.view, self.height)
        if (self.faults.fixed_progress_timer or key not in self.armed or self.changing
                or key + (stage,) in self.extended):
            return
        self.extended.add(key + (stage,))
        self.progress_gen += 1
        out.append(ScheduleTimeout("progress", self.view, self.height, self._timeout(), self.progress_gen))

    def _maybe_propose(self, out: list) -> None:
        h, v = self.height, self.view
        if not self._active() or self.primary(v, h) != self.me or self.pp is not None or self.requested == (v, h):
            return
        if h < self.nv_height or (h == self.nv_height and self.nv_hash is not None):
            return
        if (h, v) == (self.rec.height, self.rec.view) and self.rec.signed("pp") is not None:
            return  # proposed here before a restart; cannot sign another
        self.requested = (v, h)
        out.append(RequestProposal(v, h))

    # -- entry points ---------------------------------------------------------------

    def start(self) -> list:
        """Initial effects after construction (or restart from a persisted SignedState)."""
        out: list = []
        cert = self.last_cert
        if (self.n > 1 and self.rec.height < self.height and cert is not None and cert.height == self.height - 1
                and (self.changing or cert.view > self.view)):
            # Restarted, with nothing signed at this height yet, after a view change for a
            # height committed since (or behind the certificate's view): rule F.
            self._adopt_view(cert.view, out)
            self._maybe_propose(out)
        elif self.changing and self.n > 1:
            self._send_view_change(out)
            out.append(ScheduleTimeout("viewchange", self.view, self.height, self._timeout()))
        else:
            self._maybe_propose(out)
        return out

    def on_event(self, event) -> list:
        out: list = []
        if isinstance(event, MessageReceived):
            if getattr(event.msg, "sender", None) in self.vset:
                self._dispatch(event.msg, out)
        elif isinstance(event, BlockVerdict):
            self._on_verdict(event, out)
        elif isinstance(event, ProposalReady):
            self._on_proposal(event, out)
        elif isinstance(event, TimeoutFired):
            self._on_timeout(event, out)
        elif isinstance(event, Committed):
            self._on_committed(event, out)
        elif isinstance(event, FetchedBlock):
            self._on_fetched(event, out)
        elif isinstance(event, PendingTxs):
            self.pending, self.oldest = event.count, event.oldest
            if event.count > 0:
                self._arm_progress(out)
            self._arm_censor(out)
        elif isinstance(event, CommitFailed):
            self._on_commit_failed(event, out)
        elif isinstance(event, PeerConnected):
            self._on_peer_connected(event.peer, out)
        elif isinstance(event, Tick):
            pass
        return out

    def _dispatch(self, msg, out: list) -> None:
        if isinstance(msg, PrePrepare):
            self._on_preprepare(msg, out)
        elif isinstance(msg, Prepare):
            self._on_prepare(msg, out)
        elif isinstance(msg, Commit):
            self._on_commit(msg, out)
        elif isinstance(msg, ViewChange):
            self._on_view_change(msg, out)
        elif isinstance(msg, NewView):
            self._on_new_view(msg, out)

    # -- normal case ----------------------------------------------------------------

    def _triage(self, msg, out: list) -> bool:
        """Route messages not for (current view, current height); True if msg is for now."""
        if msg.height < self.height:
            if msg.height < self.height - 1:  # one behind is usually just late
                self._help(msg.sender, msg.view, out)
            return False
        if msg.height > self.height or msg.view > self.view or (msg.view == self.view and self.changing):
            self._buffer(msg, out)
            return False
        if msg.view < self.view:
            self._stale(msg.sender, msg.view, out)
            return False
        return True

    def _on_preprepare(self, pp: PrePrepare, out: list) -> None:
        # The sender first: only the primary of (view, height) may park a block here.
        if pp.sender != self.primary(pp.view, pp.height) or not self._triage(pp, out):
            return
        if self._seen(("pp", pp.sender, pp.view, pp.height), pp.block_hash, pp, out):
            return
        if self.pp is not None or self.deciding is not None:
            return
        if pp.height < self.nv_height or (pp.height == self.nv_height and self.nv_hash not in (None, pp.block_hash)):
            return  # the NewView of this view requires a different block here
        self.pp = pp
        # The node checked that pp.block hashes to pp.block_hash (check_message). Even so,
        # bytes not yet found valid are never kept against the digest: the latest wins.
        if pp.block_hash not in self.valid and not self.faults.invalid_for_height:
            self.blocks[pp.block_hash] = pp.block
        self.blocks.setdefault(pp.block_hash, pp.block)
        self._arm_progress(out)
        if self._judge_late(pp, out):
            return  # a third strike: view change started
        if pp.block_hash in self.valid:  # our own proposals are valid
            self._on_valid(out)
        elif self.invalid.get(pp.block_hash, -1) >= (0 if self.faults.invalid_for_height else pp.view):
            self._start_view_change(self.view + 1, out)
        elif pp.block_hash not in self.validating:
            self._validate(pp.view, pp.block_hash, pp.block, out)

    def _validate(self, view: int, block_hash: bytes, block: bytes, out: list) -> None:
        self.validating[block_hash] = self.view
        out.append(ValidateBlock(view, self.height, block_hash, block))

    def _on_valid(self, out: list) -> None:
        pp = self.pp
        self._extend_progress("pp", out)
        if pp.sender != self.me:
            if not self._sign(out, pp.height, pp.view, [("prepare", pp.block_hash)]):
                return
            mine = make_prepare(self.signer, self.chain_id, pp.view, pp.height, pp.block_hash)
            self.prepares.setdefault((pp.view, pp.block_hash), {})[self.me] = mine
            out.append(Broadcast(mine))
        self._check_prepared(out)

    def _on_prepare(self, p: Prepare, out: list) -> None:
        if not self._triage(p, out) or p.sender == self.primary(p.view, p.height):
            return
        # A vote that conflicts with an earlier one is evidence, and still counted: a
        # faulty validator may vote for anything, quorum intersection allows for that.
        self._seen(("prepare", p.sender, p.view, p.height), p.block_hash, p, out)
        votes = self.prepares.setdefault((p.view, p.block_hash), {})
        votes[p.sender] = p
        if len(votes) - (self.me in votes) > self.f:
            self._extend_progress("prepares", out)
        self._check_prepared(out)

    def _check_prepared(self, out: list) -> None:
        pp = self.pp
        if pp is None or not self._active() or pp.block_hash not in self.valid:
            return
        votes = self.prepares.get((pp.view, pp.block_hash), {})
        if len(votes) < self.q - 1:  # with the pre-prepare: a quorum
            return
        if self.prepared is None or self.prepared.view < pp.view:
            chosen = tuple(votes[k] for k in sorted(votes)[: self.q - 1])
            self.prepared = PreparedCert(pp, chosen)
        if self.rec.signed("commit") is not None and (self.rec.height, self.rec.view) == (pp.height, pp.view):
            return  # already committed-voted here
        if not self._sign(out, pp.height, pp.view, [("commit", pp.block_hash)]):
            return
        mine = make_commit(self.signer, self.chain_id, pp.view, pp.height, pp.block_hash)
        self.commits.add(mine)
        out.append(Broadcast(mine))
        self._check_committed(out, [(pp.view, pp.block_hash)])

    def _on_commit(self, c: Commit, out: list) -> None:
        if c.height < self.height:
            if c.height < self.height - 1:
                self._help(c.sender, c.view, out)
            return
        if c.height > self.height:
            self._buffer(c, out)
            return
        self._seen(("commit", c.sender, c.view, c.height), c.block_hash, c, out)
        key = self.commits.add(c)  # bounded per sender (consensus/bookkeeping.py)
        if key is not None:
            self._check_committed(out, [key])

    def _check_committed(self, out: list, keys=None) -> None:
        """Decide if one of `keys` (default: every (view, hash) counted) has a quorum of
        commits; callers pass the keys that just changed, so a commit costs O(1)."""
        if self.deciding is not None:
            return
        need = max(1, self.q - 1) if self.faults.commit_on_2f else self.q
        for view, block_hash in sorted(self.commits.keys() if keys is None else keys):
            votes = self.commits.get((view, block_hash))
            if len(votes) < need:
                continue
            block = self.blocks.get(block_hash)
            voters = sorted(votes)
            hint = voters[self.fetches % len(voters)]  # a different voter each try
            if block is None:
                self._fetch(out, hint)
                return
            if block_hash not in self.valid:
                if block_hash in self.invalid:
                    self._fetch(out, hint)
                elif block_hash not in self.validating:
                    self._validate(view, block_hash, block, out)
                return
            cert = Certificate.build(self.height, view, block_hash, {k: v.signature for k, v in votes.items()})
            self._decide(block_hash, block, cert, out)
            return

    def _decide(self, block_hash: bytes, block: bytes, cert: Certificate, out: list) -> None:
        self.deciding = block_hash
        self.last_cert = cert
        out.append(CommitBlock(self.height, block_hash, block, cert))

    def _on_verdict(self, ev: BlockVerdict, out: list) -> None:
        asked = self.validating.pop(ev.block_hash, self.view)
        if ev.valid:
            self.valid.add(ev.block_hash)
        else:
            self.invalid[ev.block_hash] = max(asked, self.invalid.get(ev.block_hash, -1))
        pp = self.pp
        if pp is not None and pp.block_hash == ev.block_hash and self._active() and pp.view == self.view:
            if ev.valid:
                self._on_valid(out)
            elif asked >= pp.view or self.faults.invalid_for_height:
                self._start_view_change(self.view + 1, out)
            else:  # asked in an earlier view (a re-proposal since): ask again
                self._validate(pp.view, pp.block_hash, pp.block, out)
        self._check_committed(out, self.commits.keys_for(ev.block_hash))

    def _on_proposal(self, ev: ProposalReady, out: list) -> None:
        if (ev.view, ev.height) != (self.view, self.height) or self.requested != (ev.view, ev.height):
            return
        if not self._active() or self.pp is not None:
            return
        if not self._sign(out, ev.height, ev.view, [("pp", ev.block_hash)]):
            return
        pp = make_preprepare(self.signer, self.chain_id, ev.view, ev.height, ev.block_hash, ev.block)
        self.valid.add(ev.block_hash)
        out.append(Broadcast(pp))
        self._on_preprepare(pp, out)

    def _on_committed(self, ev: Committed, out: list) -> None:
        if ev.height < self.height:
            return
        if ev.certificate is not None:
            self.last_cert = ev.certificate
        if self.last_cert is not None and self.last_cert.height != ev.height:
            self.last_cert = None
        cert = self.last_cert
        self.height = ev.height + 1
        if ev.config is not None:
            # Parameters of the new height, from the committed state: the leader schedule
            # (rotation_blocks) and timers switch at the same height on every replica.
            self.config = ev.config
        self._set_validators(tuple(ev.validators))
        self.vc_latest = {k: v for k, v in self.vc_latest.items() if k in self.vset}
        self.prepared = None
        if not self.faults.fixed_progress_timer:
            if self.failed_views > (1 if self.unsteady else 0):  # this height needed a view change
                self.unsteady = STEADY_HEIGHTS
            elif self.unsteady:
                self.unsteady -= 1
        self.failed_views = 1 if self.unsteady else 0
        self.fetching = False
        self.fetches = 0
        self._reset_height()
        self.seen.prune(lambda k: k[2] >= self.view if k[0] in ("vc", "nv") else k[3] >= self.height)
        self.pending = 0  # the node reports the new count after every Committed
        if self.n > 1 and cert is not None and (self.changing or cert.view > self.view):
            # Rule F: a view change of ours was about the height just committed, so it is
            # moot; and a certificate from a higher view shows a quorum went on without us.
            # Either way take the certificate's view, at this fresh height.
            self._adopt_view(cert.view, out)
            self._join(out)
        elif self.changing and self.n > 1:
            self._send_view_change(out)  # scoped to the new height (rule R1)
        self._maybe_propose(out)
        self._replay(out)
        self._try_new_view(out)
        nv, self.deferred_nv = self.deferred_nv, None
        if nv is not None:
            self._on_new_view(nv, out)

    def _adopt_view(self, view: int, out: list) -> None:
        """Rule F: at a height where we have signed nothing yet, leave a view change and
        enter `view` (the view of the certificate of the previous height) unconstrained."""
        self.view, self.changing = view, False
        self.nv_height, self.nv_hash = self.height, None
        self.new_view_msg = None
        self.pp = None
        self.requested = None
        self._persist_view(out)

    def _on_fetched(self, ev: FetchedBlock, out: list) -> None:
        cert = ev.certificate
        if ev.height != self.height or self.deciding is not None:
            return
        if cert.height != ev.height or cert.block_hash != ev.block_hash:
            return
        try:
            cert.verify(self.chain_id, list(self.validators))
        except BlockInvalid:
            return
        self._decide(ev.block_hash, ev.block, cert, out)

    def _on_timeout(self, ev: TimeoutFired, out: list) -> None:
        if ev.kind == "progress":
            if ev.gen != self.progress_gen and (ev.view, ev.height) == (self.view, self.height):
                return  # re-armed since: a newer timer of this (view, height) is running
            self.armed.discard((ev.view, ev.height))
            if (ev.view, ev.height) == (self.view, self.height) and self._active():
                if self.pending > 0 or self.pp is not None:
                    if self.behind is not None and not self.waited:
                        # Others are ahead: we are late, not necessarily the primary. A
                        # view change now would leave us alone in a view nobody joins.
                        self.waited = True
                        self.fetching = False
                        self._fetch(out, self.behind)
                        self._arm_progress(out)
                    else:
                        self._start_view_change(self.view + 1, out)
        elif ev.kind == "viewchange":
            if self.changing and ev.view == self.view:
                self._fetch(out, None)  # no new view yet: maybe the others moved on without us
                others = len(self._current_vcs(self.view - 1))
                if others >= self.f:
                    self._start_view_change(self.view + 1, out)
                else:
                    # Alone in asking for this view (cut off, or just late): ask again rather
                    # than run ahead of everyone into views nobody will join.
                    self.failed_views += 1
                    self._send_view_change(out)
                    out.append(ScheduleTimeout("viewchange", self.view, self.height, self._timeout()))
        elif ev.kind == "fetch":
            if ev.height == self.height:
                self.fetching = False
        elif ev.kind == "censor":
            self._on_censor_timeout(out)
        elif ev.kind == "slow":
            self._on_slow_timeout(ev, out)
        elif ev.kind == "commit":
            self._on_commit_retry(ev, out)

    # -- catching up and helping others --------------------------------------------

    def _buffer(self, msg, out: list) -> None:
        """Keep a message for a later height or view, within a quota per sender (count and
        bytes), so no validator can crowd out the others' future messages."""
        ahead = msg.height - self.height
        if ahead > 1 or (ahead == 1 and isinstance(msg, Commit)):
            self._fetch(out, msg.sender)  # someone decided our height already
        if ahead <= self.config.max_future_heights:
            self.future.add(msg)

    def _replay(self, out: list) -> None:
        for msg in self.future.take():
            # the validator set may have changed since the message was buffered
            if msg.height >= self.height and msg.sender in self.vset:
                self._dispatch(msg, out)

    def _help(self, peer: bytes, their_view: int, out: list) -> None:
        """A peer is at a lower height: hand it the commits of our last block, so it can
        decide it or learn that it must fetch (once per view the peer is in)."""
        cert = self.last_cert
        if cert is None or peer == self.me or not self._may_help("h", peer, their_view):
            return
        for key, sig in cert.signatures:
            out.append(Send(peer, Commit(cert.view, cert.height, cert.block_hash, key, sig)))

    def _stale(self, peer: bytes, their_view: int, out: list) -> None:
        """A peer is in a lower view: show it how we got here (once per view it is in)."""
        if peer == self.me or not self._may_help("s", peer, their_view):
            return
        if self.changing:
            mine = self.vc_latest.get(self.me)
            if mine is not None and mine.new_view == self.view:
                out.append(Send(peer, mine))
        elif self.new_view_msg is not None:
            out.append(Send(peer, self.new_view_msg))

    def _may_help(self, kind: str, peer: bytes, their_view: int) -> bool:
        """Once per view the peer is in, views only going up, at most MAX_HELPS times per
        peer and height: a peer sending junk at ever higher views gets no more."""
        last, times = self.helped.get((kind, peer), (-1, 0))
        if their_view <= last or times >= MAX_HELPS:
            return False
        self.helped[(kind, peer)] = (their_view, times + 1)
        return True

    # -- view change ------------------------------------------------------------------

    def _start_view_change(self, target: int, out: list) -> None:
        if self.n == 1 or target <= self.view:
            return
        self.view, self.changing = target, True
        self.pp = None
        self.new_view_msg = None
        self.failed_views += 1
        self._send_view_change(out)
        out.append(ScheduleTimeout("viewchange", target, self.height, self._timeout()))
        self._try_new_view(out)

    def _send_view_change(self, out: list) -> None:
        """Sign (or sign again: same position, same bytes) and broadcast ViewChange(view)."""
        vc = make_view_change(self.signer, self.chain_id, self.view, self.height - 1, self.prepared)
        if self._sign(out, self.height, self.view, [("vc", sha256(signed_bytes(vc, self.chain_id)))]):
            self.vc_latest[self.me] = vc
            out.append(Broadcast(vc))

    def _on_view_change(self, vc: ViewChange, out: list) -> None:
        if vc.last_committed_height < self.height - 1:
            self._help(vc.sender, vc.new_view, out)
        if vc.new_view < self.view or (vc.new_view == self.view and not self.changing):
            self._stale(vc.sender, vc.new_view, out)
            return
        if not proofs.view_change_ok(vc, self.validators, self.config.rotation_blocks):
            return
        key = ("vc", vc.sender, vc.new_view, vc.last_committed_height)
        if self._seen(key, sha256(signed_bytes(vc, self.chain_id)), vc, out):
            return
        prev = self.vc_latest.get(vc.sender)
        # Positions (height, view) of one signer only move forward: keep its latest request.
        if prev is None or (vc.last_committed_height, vc.new_view) > (prev.last_committed_height, prev.new_view):
            self.vc_latest[vc.sender] = vc
        if vc.last_committed_height >= self.height:
            self._fetch(out, vc.sender)
        self._join(out)
        self._try_new_view(out)

    def _join(self, out: list) -> None:
        views = self._current_vcs(self.view)
        if len(views) > self.f:
            self._start_view_change(views[self.f], out)  # f+1 want at least this view: join

    def _try_new_view(self, out: list) -> None:
        v, h = self.view, self.height
        if not self.changing or self.deciding is not None or self.primary(v, h) != self.me:
            return
        asked = [x for x in self.vc_latest.values() if x.new_view == v]
        ahead = [x for x in asked if x.last_committed_height >= h]
        if ahead:
            # A claim to have committed our height is only a hint (it carries no proof):
            # fetch, but never wait for it, or one liar claiming a huge height would
            # hold back every NewView. R1 keeps its ViewChange out of ours anyway.
            self._fetch(out, max(ahead, key=lambda x: x.last_committed_height).sender)
            if self.faults.wait_for_claimed_height:
                return
        # Rule R1: a NewView for height h is built only from ViewChanges scoped to h;
        # exactly q of them (any q intersect every commit quorum), as check_message demands.
        vcs = tuple(sorted((x for x in asked if x.last_committed_height == h - 1 or self.faults.unscoped_new_view),
                           key=lambda x: x.sender))[: self.q]
        if len(vcs) < self.q:
            return
        chosen = None if self.faults.ignore_prepared else proofs.select_prepared(vcs, h)
        pp = None
        items = []
        if chosen is not None:
            pp = make_preprepare(self.signer, self.chain_id, v, h, chosen.block_hash, chosen.preprepare.block)
            items.append(("pp", chosen.block_hash))
        nv = make_new_view(self.signer, self.chain_id, v, h, vcs, pp)
        items.insert(0, ("nv", sha256(signed_bytes(nv, self.chain_id))))
        if not all(self._can_sign(h, v, p, d) for p, d in items):
            return
        self._enter_view(nv, None if chosen is None else chosen.block_hash)
        self._sign(out, h, v, items)
        out.append(Broadcast(nv))
        self._after_enter(nv, out)

    def _on_new_view(self, nv: NewView, out: list) -> None:
        if nv.view < self.view or (nv.view == self.view and not self.changing):
            if nv.view < self.view:
                self._stale(nv.sender, nv.view, out)
            return
        ok, must = proofs.new_view_ok(nv, self.validators, self.config.rotation_blocks, self.q,
                                      self.faults.ignore_prepared, self.faults.unscoped_new_view)
        if not ok:
            return
        if self._seen(("nv", nv.sender, nv.view, nv.height), sha256(signed_bytes(nv, self.chain_id)), nv, out):
            return
        if nv.height < self.height and self.prepared is not None and not self.faults.enter_lower_new_view:
            # Rule R2: this NewView says nothing about our height, where we prepared (and may
            # have commit-voted) in a lower view: entering it could let us vote for another
            # block here. Put it off until we have left this height.
            self.deferred_nv = nv
            return
        self._enter_view(nv, must)
        if nv.height > self.height:
            self._fetch(out, nv.sender)
        self._after_enter(nv, out)

    def _enter_view(self, nv: NewView, must: bytes | None) -> None:
        self.view, self.changing = nv.view, False
        self.nv_height, self.nv_hash = nv.height, must
        self.new_view_msg = nv
        self.pp = None
        self.requested = None

    def _after_enter(self, nv: NewView, out: list) -> None:
        if nv.preprepare is not None:
            self._on_preprepare(nv.preprepare, out)
        self._maybe_propose(out)
        if self.pending > 0:
            self._arm_progress(out)
        self._replay(out)

    # -- reconnection -----------------------------------------------------------------

    def _on_peer_connected(self, peer: bytes, out: list) -> None:
        """A session to `peer` (re)opened. What we sent it over the old one may have died
        there (a partition, a silent TCP drop), and nothing else would send it again
        before a timeout: send what it needs to rejoin us at once. The commits of our last
        block (it may be a height behind: it decides or fetches), the proof of our view
        (our ViewChange while changing, else the NewView that made the view), and what we
        signed at this height and view. Only our own signatures and proofs we hold: no
        new signature, so nothing to persist."""
        if peer == self.me or peer not in self.vset:
            return
        self._rearm_progress(out)
        cert = self.last_cert
        if cert is not None:
            for key, sig in cert.signatures:
                out.append(Send(peer, Commit(cert.view, cert.height, cert.block_hash, key, sig)))
        if self.changing:
            mine = self.vc_latest.get(self.me)
            if mine is not None and mine.new_view == self.view:
                out.append(Send(peer, mine))
            return
        nv = self.new_view_msg
        if nv is not None and nv.view == self.view:
            out.append(Send(peer, nv))
        pp = self.pp
        if pp is None or pp.view != self.view:
            return
        if pp.sender == self.me and (nv is None or nv.preprepare != pp):
            out.append(Send(peer, pp))
        for votes in (self.prepares, self.commits):
            mine = (votes.get((pp.view, pp.block_hash)) or {}).get(self.me)
            if mine is not None:
                out.append(Send(peer, mine))
