"""Visible progress restarts the progress timer (issue 13 item 2), a bounded number of times:
the primary's PrePrepare found valid, and f+1 matching Prepares from validators other than
the replica and the primary, each once per (view, height). So a (view, height) lasts at most
three timeouts (plus one for a reconnect) at a replica before it asks for a view change,
whatever a primary drips (consensus/core.py EXTENSIONS, docs/consensus.md §3)."""

from __future__ import annotations

from consensus.core import EXTENSIONS, STEADY_HEIGHTS, Replica
from consensus.effects import Broadcast, ScheduleTimeout
from consensus.events import BlockVerdict, Committed, MessageReceived, PeerConnected, PendingTxs, TimeoutFired
from consensus.messages import Prepare, ViewChange, make_commit, make_prepare, make_preprepare
from consensus.state import ConsensusConfig, Faults
from ledger.block import Certificate
from ledger.crypto import Signer
from ledger.encoding import sha256

CHAIN = "cxl-test"
KEYS = [Signer(sha256(b"extend-key-%d" % i)) for i in range(4)]
VALS = tuple(k.public_key for k in KEYS)
CFG = ConsensusConfig(view_timeout_ms=100, rotation_blocks=0)  # validators[0] leads view 0
BLOCK = b"block-1"
HASH = sha256(BLOCK)


def progress(effects):
    return [e for e in effects if isinstance(e, ScheduleTimeout) and e.kind == "progress"]


def view_changes(effects):
    return [e for e in effects if isinstance(e, Broadcast) and isinstance(e.msg, ViewChange)]


def backup(faults=Faults()):
    rep = Replica(CHAIN, KEYS[1], VALS, 1, CFG, faults=faults)
    rep.start()
    (first,) = progress(rep.on_event(PendingTxs(3)))
    return rep, first


def preprepare(rep, block=BLOCK):
    return rep.on_event(MessageReceived(make_preprepare(KEYS[0], CHAIN, 0, 1, sha256(block), block)))


def prepare(rep, i, block_hash=HASH):
    return rep.on_event(MessageReceived(make_prepare(KEYS[i], CHAIN, 0, 1, block_hash)))


def fire(rep, timer):
    return rep.on_event(TimeoutFired("progress", timer.view, timer.height, timer.gen))


def test_a_valid_preprepare_restarts_the_timer_and_the_old_one_is_stale():
    rep, old = backup()
    assert progress(preprepare(rep)) == []  # not yet: a block not found valid is no progress
    out = rep.on_event(BlockVerdict(HASH, True))
    assert any(isinstance(e, Broadcast) and isinstance(e.msg, Prepare) for e in out)
    (new,) = progress(out)
    assert (new.view, new.height, new.after_ms) == (0, 1, 100) and new.gen > old.gen
    assert fire(rep, old) == [] and not rep.changing  # the timer armed before the block came
    assert view_changes(fire(rep, new)) and rep.changing  # the restarted one still ends the view


def test_an_invalid_preprepare_is_no_progress():
    rep, _ = backup()
    preprepare(rep)
    out = rep.on_event(BlockVerdict(HASH, False))
    assert progress(out) == [] and view_changes(out)


def test_f_plus_one_prepares_from_others_restart_the_timer_of_a_replica_without_the_block():
    """Its link to the primary is stuck; two others (f+1) accepted the proposal."""
    rep, old = backup()
    assert progress(prepare(rep, 2)) == []  # one other: may be the one faulty validator
    assert progress(prepare(rep, 2)) == []  # the same one again
    assert progress(prepare(rep, 0)) == []  # the primary does not prepare: never counted
    assert progress(prepare(rep, 3, sha256(b"other"))) == []  # not the same block
    (new,) = progress(prepare(rep, 3))
    assert new.gen > old.gen
    assert fire(rep, old) == [] and not rep.changing
    assert view_changes(fire(rep, new))


def test_each_stage_restarts_once_so_a_view_lasts_at_most_three_timeouts():
    """A primary that drips: the block just before the first deadline, the Prepares it lets
    through just before the second, then nothing that completes the height."""
    assert EXTENSIONS == ("pp", "prepares")
    rep, t0 = backup()
    preprepare(rep)
    (t1,) = progress(rep.on_event(BlockVerdict(HASH, True)))
    assert fire(rep, t0) == []
    (t2,) = progress(prepare(rep, 2) + prepare(rep, 3))
    assert fire(rep, t1) == []
    # more of the same, and a second block, restart nothing
    again = prepare(rep, 2) + prepare(rep, 3) + preprepare(rep, b"block-1b") + rep.on_event(BlockVerdict(HASH, True))
    assert progress(again) == []
    assert view_changes(fire(rep, t2)) and rep.changing  # the third timeout ends the view


def test_the_budget_is_per_view_and_a_reconnect_adds_one_more():
    rep, t0 = backup()
    (t1,) = progress(rep.on_event(PeerConnected(VALS[2])))  # issue 13.1: once per (view, height)
    preprepare(rep)
    (t2,) = progress(rep.on_event(BlockVerdict(HASH, True)))
    (t3,) = progress(prepare(rep, 2) + prepare(rep, 3))
    assert progress(rep.on_event(PeerConnected(VALS[3]))) == []
    assert [fire(rep, t) for t in (t0, t1, t2)] == [[], [], []]
    assert view_changes(fire(rep, t3))
    assert rep.view == 1 and rep.changing
    # while changing view nothing restarts the progress timer
    assert progress(prepare(rep, 2) + prepare(rep, 3)) == []


def test_nothing_restarts_a_timer_that_is_not_running():
    rep = Replica(CHAIN, KEYS[1], VALS, 1, CFG)
    rep.start()
    out = prepare(rep, 2) + prepare(rep, 3)
    assert progress(out) == []  # no pending txs, no block: no timer to restart
    assert rep.extended == set()


def test_the_old_fixed_timer_is_a_fault_switch():
    rep, t0 = backup(Faults(fixed_progress_timer=True))
    preprepare(rep)
    out = rep.on_event(BlockVerdict(HASH, True)) + prepare(rep, 2) + prepare(rep, 3)
    assert progress(out) == []
    assert view_changes(fire(rep, t0))


# -- after a height that needed a view change (consensus/core.py STEADY_HEIGHTS) -----------------

def commit_height(rep, view):
    """The replica's height is decided in `view` (its own commits, or fetched): Committed with
    the certificate, then the node's mempool report."""
    h = rep.height
    block_hash = sha256(b"decided-%d" % h)
    votes = {k.public_key: make_commit(k, CHAIN, view, h, block_hash).signature for k in KEYS[:3]}
    rep.on_event(Committed(h, block_hash, VALS, Certificate.build(h, view, block_hash, votes)))
    return progress(rep.on_event(PendingTxs(3)))


def test_after_a_view_change_heights_start_at_twice_the_timeout_until_steady_again():
    rep, t0 = backup()
    assert t0.after_ms == 100
    (t,) = commit_height(rep, 0)  # a clean height: the next one starts at T
    assert t.after_ms == 100
    assert view_changes(fire(rep, t))  # height 2 needs a view change
    (t,) = commit_height(rep, 1)  # decided in view 1 (rule F takes us there)
    assert t.after_ms == 200 and not rep.changing
    for _ in range(STEADY_HEIGHTS - 1):
        (t,) = commit_height(rep, 1)
        assert t.after_ms == 200
    (t,) = commit_height(rep, 1)  # STEADY_HEIGHTS clean heights in a row
    assert t.after_ms == 100


def test_a_view_change_in_the_unsteady_stretch_starts_it_again():
    rep, t0 = backup()
    fire(rep, t0)
    (t,) = commit_height(rep, 1)
    assert t.after_ms == 200
    for _ in range(3):
        (t,) = commit_height(rep, 1)
    assert view_changes(fire(rep, t))  # at 2T, still too short once more
    for _ in range(STEADY_HEIGHTS):
        (t,) = commit_height(rep, 2)
        assert t.after_ms == 200
    (t,) = commit_height(rep, 2)
    assert t.after_ms == 100


def test_the_old_timers_reset_to_t_at_every_commit():
    rep, t0 = backup(Faults(fixed_progress_timer=True))
    fire(rep, t0)
    (t,) = commit_height(rep, 1)
    assert t.after_ms == 100
