"""A certified block that one honest replica's chain refuses (a passing disk error, a bug)
must not leave that replica in `deciding` for good (docs/consensus.md §4, liveness, case
5). Here replica 2's chain refuses its first two commits at height 3; the node answers
`CommitFailed` and the core retries on its "commit" timer. On the code before, the core
ignored the answer and waited for `Committed` for ever: replica 2 stopped at height 2
(a liveness violation). Control: the same seeds with no refusal."""

from __future__ import annotations

import random

from consensus.events import CommitFailed

from .harness import Scenario, Sim

VICTIM_NODE, AT_HEIGHT, REFUSALS = 2, 3, 2


def run(seed: int, refuse: bool):
    sc = Scenario(seed=seed, n=4, profile="clean", chaos_ms=1500, txs=0)
    sim = Sim(sc, random.Random(seed))
    for i, at in enumerate(range(0, 1500, 100)):
        sim.schedule(at, -1, ("submit", b"tx-%d" % i))
    node = sim.nodes[VICTIM_NODE]
    real_commit, refused = node.commit, []

    def commit(eff):
        if refuse and eff.height == AT_HEIGHT and len(refused) < REFUSALS:
            refused.append(sim.now)  # the chain said no: the node answers CommitFailed
            sim.schedule(0, node.id, ("local", node.incarnation, CommitFailed(eff.height, eff.block_hash, "refused")))
            return
        real_commit(eff)

    node.commit = commit
    stats = sim.run()  # raises Violation("liveness") if a replica never gets past the height
    return sim, refused, stats


def test_a_refused_commit_is_retried_and_the_replica_keeps_up():
    for seed in range(5):
        sim, refused, _ = run(seed, True)
        assert len(refused) == REFUSALS
        heights = {len(x.chain) for x in sim.nodes}
        assert len(heights) == 1 and heights.pop() > AT_HEIGHT


def test_control_without_refusals():
    for seed in range(5):
        sim, refused, _ = run(seed, False)
        assert refused == [] and len({len(x.chain) for x in sim.nodes}) == 1
