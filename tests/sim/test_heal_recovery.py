"""Issue 13 item 1, seeded: after a long 2|2 partition heals, the replicas told of the new
sessions (PeerConnected) re-send their state and re-arm their progress timers, and the first
commit comes sooner than without those events. Sim time only: no wall clock."""

from __future__ import annotations

import random

from .harness import Scenario, Sim

LONG_SPLIT = 8000  # sim ms: the view-change timeouts have backed off to their cap


def heal_commit(seed: int, reconnect: bool) -> int:
    ids = [0, 1, 2, 3]
    sc = Scenario(seed=seed, n=4, profile="clean", chaos_ms=LONG_SPLIT, txs=4, reconnect=reconnect,
                  partitions=[(0, [set(ids[:2]), set(ids[2:])])])
    stats = Sim(sc, random.Random(seed)).run()  # raises Violation on any broken invariant
    assert stats.heal_commit_ms is not None
    return stats.heal_commit_ms


def test_reconnect_events_make_the_first_commit_after_a_heal_come_sooner():
    for seed in range(6):
        with_events, without = heal_commit(seed, True), heal_commit(seed, False)
        assert with_events <= without, f"seed {seed}: {with_events} ms with reconnect events, {without} without"
        assert with_events < Scenario(seed, 4, "clean").config.max_timeout_ms, f"seed {seed}: {with_events} ms"
