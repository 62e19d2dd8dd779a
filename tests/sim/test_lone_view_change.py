"""A backup that started a view change alone rejoins the others' view (rule F,
docs/consensus.md §4): it is cut off with pending txs long enough to time out and ask
for view 1 by itself, then healed while the others keep deciding in view 0. Rotation is
off, so nothing else would ever move the others to view 1: before rule F the backup
stayed in view 1 for good, committing from the others' certificates but never voting."""

from __future__ import annotations

import random

from consensus.messages import Commit, Prepare, ViewChange
from consensus.state import ConsensusConfig

from .harness import Scenario, Sim

ISOLATED = 3  # validators[3]: primary of view 3 only, so never the leader here
CUT, HEAL = 400, 2000  # ms: the backup is alone in [CUT, HEAL)
BOUND = 1500  # ms after healing by which it must be voting again in the others' view
END = 6000


def run_lone_view_change(seed: int = 11):
    sc = Scenario(seed=seed, n=4, profile="partition", chaos_ms=END, txs=0,
                  partitions=[(CUT, [{ISOLATED}, {0, 1, 2}]), (HEAL, None)],
                  config=ConsensusConfig(view_timeout_ms=300, rotation_blocks=0, max_timeout_ms=2400))
    sim = Sim(sc, random.Random(seed))
    for i, at in enumerate(range(0, END, 150)):  # a steady stream: the others never stall
        sim.schedule(at, -1, ("submit", b"tx-%d" % i))
    votes: list[tuple[int, str, int, int]] = []  # (time, kind, view, height) signed by the backup
    vc_alone: list[tuple[int, int]] = []
    check = sim.check_signed

    def record(node, msg):
        if node.id == ISOLATED:
            if isinstance(msg, (Prepare, Commit)):
                votes.append((sim.now, type(msg).__name__, msg.view, msg.height))
            elif isinstance(msg, ViewChange):
                vc_alone.append((sim.now, msg.new_view))
        check(node, msg)

    sim.check_signed = record
    sim.run()
    return sim, votes, vc_alone


def test_lone_view_change_rejoins_the_others_view_and_votes_again():
    sim, votes, vcs = run_lone_view_change()
    lone = sim.nodes[ISOLATED]
    others = [x for x in sim.nodes if x.id != ISOLATED]
    # The scenario does what it says: the backup asked for view 1 alone while cut off, and
    # the others never left view 0 and kept committing.
    assert any(CUT <= t < HEAL and v == 1 for t, v in vcs), vcs
    assert all(x.replica.view == 0 and not x.replica.changing for x in others)
    assert all(v == 0 for x in others for _, _, c in x.chain[1:] for v in [c.view])
    # Back in the others' view, not changing, at the same height.
    assert (lone.replica.view, lone.replica.changing) == (0, False)
    assert len(lone.chain) == max(len(x.chain) for x in others)
    # It votes again, in view 0, within the bound after healing ...
    late = [(t, k, v, h) for t, k, v, h in votes if t >= HEAL]
    assert late and late[0][0] <= HEAL + BOUND, late[:3]
    assert all(v == 0 for _, _, v, _ in late)
    # ... and its commit votes are in the certificates of later blocks, its own chain's
    # and the others'.
    heal_height = min(h for _, _, _, h in late)

    def signers(node):
        return [{k for k, _ in cert.signatures} for _, _, cert in node.chain[heal_height:]]

    # (A block can still be decided from the others' commits before its own vote is in.)
    own = [lone.key in s for s in signers(lone)]
    theirs = [lone.key in s for x in others for s in signers(x)]
    assert len(own) >= 10 and sum(own) >= len(own) - 2, own
    assert sum(theirs) >= len(theirs) // 2, theirs
