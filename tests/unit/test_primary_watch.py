"""The replica's watch on a primary that keeps heights moving (consensus/liveness.py):
censorship of the oldest proposable tx, slow proposals, and a commit the node refused.
Plus the mempool read that feeds it (`Mempool.oldest_proposable`)."""

from __future__ import annotations

from consensus.core import Replica
from consensus.effects import Broadcast, CommitBlock, ResendTx, ScheduleTimeout
from consensus.events import CommitFailed, Committed, MessageReceived, PendingTxs, ProposalReady, TimeoutFired
from consensus.messages import ViewChange, make_prepare, make_preprepare
from consensus.state import ConsensusConfig, Faults
from ledger.crypto import Signer
from ledger.encoding import sha256
from ledger.tx import make_tx

from node.mempool import Mempool

CHAIN = "cxl-test"
KEYS = [Signer(sha256(b"watch-key-%d" % i)) for i in range(4)]
VALS = tuple(k.public_key for k in KEYS)
CFG = ConsensusConfig(view_timeout_ms=100, rotation_blocks=0)
TX_A, TX_B = b"\xaa" * 32, b"\xbb" * 32


def of(effects, kind):
    return [e for e in effects if isinstance(e, kind)]


def view_changes(effects):
    return [e.msg for e in effects if isinstance(e, Broadcast) and isinstance(e.msg, ViewChange)]


def backup(cfg=CFG, faults=Faults()) -> Replica:
    """validators[1]: a backup while validators[0] is the primary of view 0 (rotation off)."""
    return Replica(CHAIN, KEYS[1], VALS, 1, cfg, faults=faults)


def commit_next(rep: Replica, count: int, oldest: bytes | None, live: bool = True) -> list:
    """The chain advanced by one block without the watched tx (proposed by the primary and
    seen live, or only fetched: live=False); the node reports its mempool."""
    h, block = rep.height, b"block-%d" % rep.height
    out = []
    if live:
        pen = next(k for k in KEYS if k.public_key == rep.primary(rep.view, h))
        out += rep.on_event(MessageReceived(make_preprepare(pen, CHAIN, rep.view, h, sha256(block), block)))
    out += rep.on_event(Committed(h, sha256(block), VALS))
    return out + rep.on_event(PendingTxs(count, oldest))


# -- censorship ---------------------------------------------------------------------------

def test_a_tx_left_out_of_advancing_blocks_is_regossiped_then_the_primary_is_suspected():
    rep = backup()
    (timer,) = [t for t in of(rep.on_event(PendingTxs(5, TX_A)), ScheduleTimeout) if t.kind == "censor"]
    assert timer.after_ms == 100
    commit_next(rep, 4, TX_A)
    out = rep.on_event(TimeoutFired("censor", 0, 1))
    assert of(out, ResendTx) == [ResendTx(TX_A)] and not view_changes(out)  # first: make sure it has it
    out = rep.on_event(TimeoutFired("censor", 0, 2))
    assert not view_changes(out) and not of(out, ResendTx)  # no block since the re-gossip: wait
    commit_next(rep, 3, TX_A)
    out = rep.on_event(TimeoutFired("censor", 0, 2))
    (vc,) = view_changes(out)
    assert vc.new_view == 1 and rep.changing


def test_no_suspicion_when_the_oldest_tx_moves_on_or_no_block_was_committed():
    rep = backup()
    rep.on_event(PendingTxs(5, TX_A))
    commit_next(rep, 4, TX_B)  # A went in: B is the oldest now, and gets a full timeout of its own
    for _ in range(3):
        out = rep.on_event(TimeoutFired("censor", 0, rep.height))
        assert not view_changes(out) and not of(out, ResendTx)
    # a stuck height is the progress timer's business, not the censor watch's
    rep = backup()
    rep.on_event(PendingTxs(5, TX_A))
    for _ in range(4):
        assert not view_changes(rep.on_event(TimeoutFired("censor", 0, 1)))


def test_blocks_only_fetched_while_catching_up_blame_nobody():
    rep = backup()
    rep.on_event(PendingTxs(5, TX_A))
    for _ in range(4):  # heights advance by catch-up: the tx may be in a block not fetched yet
        commit_next(rep, 5, TX_A, live=False)
        out = rep.on_event(TimeoutFired("censor", 0, rep.height))
        assert not view_changes(out) and not of(out, ResendTx)


def test_a_primary_never_suspects_itself_and_nothing_is_watched_without_a_proposable_tx():
    me = Replica(CHAIN, KEYS[0], VALS, 1, CFG)  # the primary of view 0
    me.on_event(PendingTxs(5, TX_A))
    for _ in range(4):
        commit_next(me, 5, TX_A)
        out = me.on_event(TimeoutFired("censor", 0, me.height))
        assert not view_changes(out) and not of(out, ResendTx)
    rep = backup()
    out = rep.on_event(PendingTxs(5, None))  # pending, but none any primary could propose
    assert not [t for t in of(out, ScheduleTimeout) if t.kind == "censor"]


def test_a_new_primary_gets_a_full_timeout():
    cfg = ConsensusConfig(view_timeout_ms=100, rotation_blocks=2)  # the pen moves at height 3
    rep = Replica(CHAIN, KEYS[2], VALS, 1, cfg)
    rep.on_event(PendingTxs(5, TX_A))
    commit_next(rep, 5, TX_A)
    assert of(rep.on_event(TimeoutFired("censor", 0, 2)), ResendTx)  # validators[0] had its timeout
    commit_next(rep, 5, TX_A)  # height 3: validators[1] leads now
    out = rep.on_event(TimeoutFired("censor", 0, 3))
    assert not view_changes(out) and not of(out, ResendTx)  # it starts from scratch
    commit_next(rep, 5, TX_A)
    out = rep.on_event(TimeoutFired("censor", 0, 4))
    assert of(out, ResendTx) and not view_changes(out)


# -- slowness ----------------------------------------------------------------------------------

def late_preprepare(rep: Replica, prepared_by=()) -> list:
    """The primary's PrePrepare for the replica's (view, height) arrives, after Prepares
    for it from the validators `prepared_by` (indexes into KEYS)."""
    h, block = rep.height, b"block-%d" % rep.height
    pen = next(k for k in KEYS if k.public_key == rep.primary(rep.view, h))
    out = []
    for i in prepared_by:
        out += rep.on_event(MessageReceived(make_prepare(KEYS[i], CHAIN, rep.view, h, sha256(block))))
    return out + rep.on_event(MessageReceived(make_preprepare(pen, CHAIN, rep.view, h, sha256(block), block)))


def test_three_late_proposals_in_one_view_replace_the_primary():
    rep = backup()
    for h in (1, 2, 3):
        out = rep.on_event(PendingTxs(5, TX_A))
        (slow,) = [t for t in of(out, ScheduleTimeout) if t.kind == "slow"]
        assert (slow.view, slow.height, slow.after_ms) == (0, h, 50)  # half the view timeout
        assert not view_changes(rep.on_event(TimeoutFired("slow", 0, h)))  # judged when it comes
        out = late_preprepare(rep)
        assert bool(view_changes(out)) == (h == 3), h
        if h < 3:
            rep.on_event(Committed(h, sha256(b"block-%d" % h), VALS))


def test_a_late_proposal_others_prepared_first_is_no_strike():
    """f+1 others (here validators 2 and 3) had the block before it reached us: our link
    to the primary was slow, not the primary. One other is not enough (f+1 = 2)."""
    rep = backup()
    for h in range(1, 7):
        rep.on_event(PendingTxs(5, TX_A))
        rep.on_event(TimeoutFired("slow", 0, h))
        assert not view_changes(late_preprepare(rep, prepared_by=(2, 3))), h
        rep.on_event(Committed(h, sha256(b"block-%d" % h), VALS))
    assert rep.view == 0 and not rep.changing
    for h in range(7, 10):
        rep.on_event(PendingTxs(5, TX_A))
        rep.on_event(TimeoutFired("slow", 0, h))
        out = late_preprepare(rep, prepared_by=(2,))
        assert bool(view_changes(out)) == (h == 9), h
        if h < 9:
            rep.on_event(Committed(h, sha256(b"block-%d" % h), VALS))


def test_a_height_decided_without_the_late_proposal_is_no_strike():
    rep = backup()
    for h in range(1, 7):
        rep.on_event(PendingTxs(5, TX_A))
        rep.on_event(TimeoutFired("slow", 0, h))
        rep.on_event(Committed(h, sha256(b"b%d" % h), VALS))  # from the others' commits, or fetched
    assert rep.view == 0 and not rep.changing


def test_before_issue_13_a_strike_counted_at_the_deadline():
    rep = backup(faults=Faults(fixed_progress_timer=True))
    for h in (1, 2, 3):
        rep.on_event(PendingTxs(5, TX_A))
        out = rep.on_event(TimeoutFired("slow", 0, h))
        assert bool(view_changes(out)) == (h == 3), h
        if h < 3:
            rep.on_event(Committed(h, sha256(b"b%d" % h), VALS))


def test_proposals_in_time_are_no_strike():
    rep = backup()
    for h in range(1, 8):
        rep.on_event(PendingTxs(5, TX_A))
        rep.on_event(Committed(h, sha256(b"b%d" % h), VALS))  # decided before the deadline
        assert not view_changes(rep.on_event(TimeoutFired("slow", 0, h)))
    assert rep.view == 0 and not rep.changing


# -- a refused commit ----------------------------------------------------------------------------

def test_a_refused_commit_is_retried_with_a_growing_delay():
    rep = Replica(CHAIN, KEYS[0], (KEYS[0].public_key,), 1, CFG)
    rep.start()
    h, b = sha256(b"b1"), b"b1"
    (commit,) = of(rep.on_event(ProposalReady(0, 1, h, b)), CommitBlock)
    delays = []
    for _ in range(3):
        (retry,) = of(rep.on_event(CommitFailed(1, h, "test")), ScheduleTimeout)
        assert retry.kind == "commit" and rep.deciding is None
        delays.append(retry.after_ms)
        (again,) = of(rep.on_event(TimeoutFired("commit", 0, 1)), CommitBlock)
        assert again == commit  # the same block, the same certificate
    assert delays == [100, 200, 400]
    assert rep.on_event(CommitFailed(1, b"\x00" * 32, "stale")) == []  # not what it is deciding


# -- Mempool.oldest_proposable --------------------------------------------------------------------

A, B = Signer(sha256(b"a")), Signer(sha256(b"b"))


def tx(signer, nonce, memo="", expiry=0):
    payload = {"to": B.address, "amount": 1}
    if memo:
        payload["memo"] = memo
    return make_tx(signer, CHAIN, nonce, "transfer", payload, expiry)


def test_oldest_proposable_is_the_oldest_head_of_a_ready_run_that_fits_and_has_not_expired():
    mp = Mempool(CHAIN, lambda a: (True, 0))
    assert mp.oldest_proposable(10_000) is None
    gapped = tx(A, 1)
    mp.add(gapped, now=1.0)  # nonce 0 missing: no primary can propose it
    assert mp.oldest_proposable(10_000) is None
    b0 = tx(B, 0)
    mp.add(b0, now=3.0)
    a0 = tx(A, 0)
    mp.add(a0, now=2.0)  # fills the gap: A's run is ready, its head is a0 (not the older gapped one)
    assert mp.oldest_proposable(10_000) == a0.hash
    assert mp.oldest_proposable(len(a0.raw) - 1) in (None, b0.hash)  # too big for a block: skipped
    big_b = Mempool(CHAIN, lambda a: (True, 0))
    big_b.add(tx(B, 0, memo="x" * 500), now=1.0)
    small = tx(A, 0)
    big_b.add(small, now=2.0)
    assert big_b.oldest_proposable(len(small.raw)) == small.hash
    expiring = Mempool(CHAIN, lambda a: (True, 0))
    soon = tx(A, 0, expiry=5)
    expiring.add(soon, now=1.0)
    assert expiring.oldest_proposable(10_000, next_height=5) == soon.hash
    assert expiring.oldest_proposable(10_000, next_height=6) is None
