"""A primary that proposes just before the progress timeout, at every height, keeps the
chain moving at one block per timeout while it holds the pen: on the code before the
slow-primary strikes that was for good with rotation off and for R = 30 blocks per turn
with it. Each height at which a replica with pending txs has no PrePrepare after half the
view timeout is a strike; three strikes in one view and the replicas replace it
(consensus/liveness.py). The bound and the figures are in docs/consensus.md §4.

Control: an honest primary under the same load is never struck out (no view change)."""

from __future__ import annotations

import random

from consensus.messages import ViewChange
from consensus.state import ConsensusConfig

from .harness import Scenario, Sim

SLOW = 0  # validators[0]: the primary of view 0
TIMEOUT = 300
STREAM_MS = 5  # one tx every 5 ms, blocks of at most 4: more than the chain can take
END = 6000


def run_load(seed: int, byzantine: dict, rotation_blocks: int = 0, end: int = END):
    """Returns (sim, blocks every honest replica committed by `end`, ViewChanges honest replicas signed)."""
    sc = Scenario(seed=seed, n=4, profile="slow", chaos_ms=end, txs=0, byzantine=byzantine,
                  config=ConsensusConfig(view_timeout_ms=TIMEOUT, rotation_blocks=rotation_blocks,
                                         max_timeout_ms=8 * TIMEOUT))
    sim = Sim(sc, random.Random(seed))
    for i, at in enumerate(range(0, end, STREAM_MS)):
        sim.schedule(at, -1, ("submit", b"tx-%d" % i))
    vcs: list[tuple[int, int, int]] = []
    check = sim.check_signed

    def record(node, msg):
        if isinstance(msg, ViewChange) and node.honest:
            vcs.append((sim.now, node.id, msg.new_view))
        check(node, msg)

    sim.check_signed = record
    by_end: dict[int, int] = {}
    sim.schedule(end, -1, ("partition", None))  # a no-op event at `end`, to read the heights there
    real_submit = sim.submit

    def submit(tx):
        real_submit(tx)
        if sim.now >= end - STREAM_MS:
            by_end.update({x.id: len(x.chain) for x in sim.nodes if x.honest})
    sim.submit = submit
    sim.run()
    return sim, min(by_end.values()), vcs


def test_slow_primary_is_struck_out_and_throughput_recovers():
    for seed in range(2):
        sim, blocks, vcs = run_load(seed, {SLOW: "slow"})
        _, honest_blocks, _ = run_load(seed, {})
        # replaced early: honest replicas asked for view 1 within a few slow heights
        first = min(t for t, _, v in vcs if v == 1)
        assert first <= 4 * TIMEOUT, vcs[:3]
        # and the run as a whole lost little: most of what an all-honest network commits
        assert blocks >= 0.8 * honest_blocks, (seed, blocks, honest_blocks)


def test_with_rotation_the_slow_primary_costs_a_bounded_share():
    sim, blocks, vcs = run_load(3, {SLOW: "slow"}, rotation_blocks=30)
    _, honest_blocks, _ = run_load(3, {}, rotation_blocks=30)
    assert vcs and blocks >= 0.7 * honest_blocks, (blocks, honest_blocks)


def test_honest_primary_under_the_same_load_is_never_struck_out():
    for seed in range(2):
        for rotation in (0, 30):
            sim, blocks, vcs = run_load(seed, {}, rotation_blocks=rotation)
            assert vcs == [] and blocks > 50, (seed, rotation, blocks)


def test_seeded_runs_with_censoring_or_slow_primaries_hold_every_invariant():
    """The two behaviours in the seeded adversary too (up to f of them, with message loss),
    n = 4 and n = 7: every invariant, every tx committed within the bound."""
    from .scenarios import LIVENESS_PROFILES
    from .test_sim import run_many

    for profile in LIVENESS_PROFILES:
        assert run_many(4, profile, 7000, 40) == []
        assert run_many(7, profile, 8000, 10) == []
