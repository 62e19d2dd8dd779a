"""A primary that censors one sender (it proposes everyone else's transactions, so every
height advances and the progress timer never fires) is replaced by the replicas that
hold the victim's transaction past the timeout (docs/consensus.md §4, "Liveness under one
byzantine validator"). Rotation is off, so nothing else would ever move the pen: on the
code before the censor watch the victim's transaction was never committed.

Control: the same traffic with an honest primary commits the victim's transaction in the
next blocks and never costs a view change."""

from __future__ import annotations

import random

from consensus.messages import ViewChange
from consensus.state import ConsensusConfig

from .harness import VICTIM, Scenario, Sim

CENSOR = 0  # validators[0]: the primary of view 0
TIMEOUT = 300
STREAM_MS = 150  # one ordinary tx every 150 ms keeps the heights moving
VICTIM_AT = 600
END = 8000


def run_censorship(seed: int, byzantine: dict, rotation_blocks: int = 0, end: int = END):
    """Returns (sim, ms from the victim's submission to its commit on every honest replica,
    [(time, sender index, view)] of the ViewChanges honest replicas signed)."""
    sc = Scenario(seed=seed, n=4, profile="censor-tx", chaos_ms=end, txs=0, byzantine=byzantine,
                  config=ConsensusConfig(view_timeout_ms=TIMEOUT, rotation_blocks=rotation_blocks,
                                         max_timeout_ms=8 * TIMEOUT))
    sim = Sim(sc, random.Random(seed))
    for i, at in enumerate(range(0, end, STREAM_MS)):
        sim.schedule(at, -1, ("submit", b"tx-%d" % i))
    sim.schedule(VICTIM_AT, -1, ("submit", VICTIM + b"-0"))
    vcs: list[tuple[int, int, int]] = []
    committed_at: dict[int, int] = {}
    check, commit_of = sim.check_signed, {}

    def record(node, msg):
        if isinstance(msg, ViewChange):
            vcs.append((sim.now, node.id, msg.new_view))
        check(node, msg)

    sim.check_signed = record
    for node in sim.nodes:  # note the moment each honest replica commits the victim's tx
        commit_of[node.id] = node.commit

        def commit(eff, node=node):
            commit_of[node.id](eff)
            if VICTIM + b"-0" in node.committed:
                committed_at.setdefault(node.id, sim.now)
        node.commit = commit
    sim.run()
    honest = [x.id for x in sim.nodes if x.honest]
    latency = max(committed_at[i] for i in honest) - VICTIM_AT
    return sim, latency, vcs


def test_censoring_primary_is_replaced_and_the_victim_commits():
    for seed in range(3):
        sim, latency, vcs = run_censorship(seed, {CENSOR: "censor-tx"})
        honest = [x for x in sim.nodes if x.honest]
        # the censor kept proposing (heights advanced before the victim went in) ...
        assert all(len(x.chain) >= 10 for x in honest)
        # ... yet the honest replicas asked for view 1 and left the censor behind
        assert {i for _, i, v in vcs if v == 1} >= {x.id for x in honest}, vcs
        assert all(x.replica.primary(x.replica.view, len(x.chain) + 1) != sim.validators[CENSOR] for x in honest)
        # timer wait (one timeout for the tx to be watched, one before re-gossip, one after)
        # plus a view change: well under 6 timeouts
        assert latency <= 6 * TIMEOUT, (seed, latency)


def test_honest_primary_with_the_same_traffic_is_never_suspected():
    for seed in range(3):
        sim, latency, vcs = run_censorship(seed, {})
        assert vcs == [] and all(x.replica.view == 0 for x in sim.nodes)
        assert latency <= 2 * TIMEOUT, (seed, latency)


def test_with_rotation_the_censor_is_replaced_long_before_its_turn_ends():
    # R = 30 blocks, as on a real chain: before the fix the victim waited for the rotation
    sim, latency, vcs = run_censorship(5, {CENSOR: "censor-tx"}, rotation_blocks=30)
    assert latency <= 6 * TIMEOUT and vcs
