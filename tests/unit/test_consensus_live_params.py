"""Consensus parameters changed by governance reach the core in `Committed.config` and
apply from the next height on: the progress timer, the view-change timer and the leader
schedule (rotation_blocks) switch at that height boundary, never before."""

from __future__ import annotations

from consensus.core import Replica
from consensus.effects import Broadcast, CommitBlock, RequestProposal, ScheduleTimeout, ValidateBlock
from consensus.events import BlockVerdict, Committed, MessageReceived, PendingTxs, ProposalReady, TimeoutFired
from consensus.messages import make_preprepare
from consensus.state import ConsensusConfig, primary_index
from ledger.crypto import Signer
from ledger.encoding import sha256

CHAIN = "cxl-test"
KEYS = [Signer(sha256(b"live-params-key-%d" % i)) for i in range(4)]
VALS = tuple(k.public_key for k in KEYS)
OLD = ConsensusConfig(view_timeout_ms=1000, rotation_blocks=30)
NEW = ConsensusConfig(view_timeout_ms=250, rotation_blocks=1)


def timers(effects, kind: str) -> list[ScheduleTimeout]:
    return [e for e in effects if isinstance(e, ScheduleTimeout) and e.kind == kind]


def test_primary_of_height_two_differs_between_the_two_configs():
    # the premise of the rotation tests below
    assert primary_index(0, 2, 4, OLD.rotation_blocks) == 0
    assert primary_index(0, 2, 4, NEW.rotation_blocks) == 1


def test_new_view_timeout_is_used_from_the_height_after_the_change():
    rep = Replica(CHAIN, KEYS[2], VALS, 1, OLD)
    rep.start()
    (t,) = timers(rep.on_event(PendingTxs(1, b"tx")), "progress")
    assert (t.height, t.after_ms) == (1, 1000)
    rep.on_event(Committed(1, sha256(b"b1"), VALS, config=NEW))
    (t,) = timers(rep.on_event(PendingTxs(1, b"tx")), "progress")
    assert (t.height, t.after_ms) == (2, 250)
    # a view change at the new height doubles the new timeout
    out = rep.on_event(TimeoutFired("progress", 0, 2, t.gen))
    (vc,) = timers(out, "viewchange")
    assert (vc.view, vc.height, vc.after_ms) == (1, 2, 500)


def test_committed_without_config_keeps_the_current_one():
    rep = Replica(CHAIN, KEYS[2], VALS, 1, OLD)
    rep.start()
    rep.on_event(Committed(1, sha256(b"b1"), VALS))
    assert rep.config == OLD
    (t,) = timers(rep.on_event(PendingTxs(1, b"tx")), "progress")
    assert t.after_ms == 1000


def test_rotation_change_moves_the_pen_at_the_boundary():
    """KEYS[1] is the primary of (view 0, height 2) only under the new rotation."""
    stays = Replica(CHAIN, KEYS[1], VALS, 1, OLD)
    stays.start()
    assert RequestProposal(0, 2) not in stays.on_event(Committed(1, sha256(b"b1"), VALS))
    moved = Replica(CHAIN, KEYS[1], VALS, 1, OLD)
    moved.start()
    assert RequestProposal(0, 2) in moved.on_event(Committed(1, sha256(b"b1"), VALS, config=NEW))


def test_after_the_change_only_the_new_primary_is_followed():
    rep = Replica(CHAIN, KEYS[3], VALS, 1, OLD)
    rep.start()
    rep.on_event(Committed(1, sha256(b"b1"), VALS, config=NEW))
    rep.on_event(PendingTxs(1, b"tx"))
    old_pen = make_preprepare(KEYS[0], CHAIN, 0, 2, sha256(b"x"), b"x")
    assert not [e for e in rep.on_event(MessageReceived(old_pen)) if isinstance(e, ValidateBlock)]
    new_pen = make_preprepare(KEYS[1], CHAIN, 0, 2, sha256(b"y"), b"y")
    out = rep.on_event(MessageReceived(new_pen))
    assert [e.block_hash for e in out if isinstance(e, ValidateBlock)] == [sha256(b"y")]


def _run(n_heights: int, change_at: int):
    """Four replicas, every message delivered; the block committed at `change_at` carries
    NEW. Returns [(height, proposer)] as committed by each replica, and their configs."""
    reps = [Replica(CHAIN, KEYS[i], VALS, 1, OLD) for i in range(4)]
    committed: dict[int, list[tuple[int, bytes]]] = {i: [] for i in range(4)}
    queue: list = []
    for i, r in enumerate(reps):
        queue += [(i, e) for e in r.start()]
    while queue:
        i, eff = queue.pop(0)
        rep = reps[i]
        if isinstance(eff, Broadcast):
            for j, other in enumerate(reps):
                if j != i:
                    queue += [(j, e) for e in other.on_event(MessageReceived(eff.msg))]
        elif isinstance(eff, RequestProposal) and eff.height <= n_heights:
            raw = b"block %d by %d" % (eff.height, i)
            queue += [(i, e) for e in rep.on_event(ProposalReady(eff.view, eff.height, sha256(raw), raw))]
        elif isinstance(eff, ValidateBlock):
            queue += [(i, e) for e in rep.on_event(BlockVerdict(eff.block_hash, True))]
        elif isinstance(eff, CommitBlock):
            proposer = int(eff.block.rsplit(b" ", 1)[1])
            committed[i].append((eff.height, proposer, eff.certificate.view))
            config = NEW if eff.height == change_at else None
            queue += [(i, e) for e in rep.on_event(Committed(eff.height, eff.block_hash, VALS, config=config))]
    return committed, reps


def test_every_replica_switches_the_leader_schedule_at_the_same_height():
    committed, reps = _run(6, change_at=3)
    first = committed[0]
    assert [h for h, _, _ in first] == [1, 2, 3, 4, 5, 6]
    assert all(committed[i] == first for i in range(4))  # one chain, no fork
    assert all(view == 0 for _, _, view in first)  # no view change was needed
    # heights 1-3 by the old schedule (R = 30: KEYS[0] throughout), 4-6 by the new (R = 1)
    expect = [primary_index(0, h, 4, (OLD if h <= 3 else NEW).rotation_blocks) for h in range(1, 7)]
    assert [p for _, p, _ in first] == expect == [0, 0, 0, 3, 0, 1]
    assert all(r.config == NEW for r in reps)
