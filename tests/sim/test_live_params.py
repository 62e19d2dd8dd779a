"""Governance changes the consensus parameters of a running network (issue 10 item 2): a
change is a transaction; the block that commits it sets `rotation_blocks` and
`view_timeout_ms` for every later height, and each replica gets the new configuration in
`Committed.config`. The harness checks at every commit that the replica runs with the
configuration its chain sets for the next height ("config"), that every progress and
view-change timer at a height lasts that height's timeout ("timer"), and that every
committed block was proposed by the primary of that height's schedule ("proposer"), on
top of agreement and the rest. Seeded: a failure names its seed and replays exactly."""

from __future__ import annotations

import random

import pytest

from consensus.state import ConsensusConfig

from .harness import Scenario, Sim, Violation

BASE = ConsensusConfig(view_timeout_ms=300, rotation_blocks=3, max_timeout_ms=2400)
CHANGES = [(400, {"rotation_blocks": 1}), (1400, {"view_timeout_ms": 200, "rotation_blocks": 2}),
           (2200, {"rotation_blocks": 0, "view_timeout_ms": 450})]
FINAL = ConsensusConfig(view_timeout_ms=450, rotation_blocks=0, max_timeout_ms=2400)


def scenario(seed: int, **kw) -> Scenario:
    base = dict(seed=seed, n=4, profile="live-params", chaos_ms=3000, txs=16, drop=0.05, delay=(1, 30),
                config=BASE, param_changes=CHANGES)
    base.update(kw)
    return Scenario(**base)


def change_heights(node) -> list[tuple[int, ConsensusConfig]]:
    """(first height, config) for each configuration this node's chain has set."""
    out = []
    for h, cfg in enumerate(node.configs, start=1):
        if not out or out[-1][1] != cfg:
            out.append((h, cfg))
    return out


def run(sc: Scenario) -> Sim:
    sim = Sim(sc, random.Random(sc.seed))
    try:
        sim.run()
    except Violation as exc:
        raise AssertionError(f"seed {sc.seed}: {exc}") from None
    return sim


@pytest.mark.parametrize("seed", range(12))
def test_every_replica_switches_at_the_same_height_with_no_fork(seed):
    sim = run(scenario(seed))
    honest = [x for x in sim.nodes if x.honest]
    schedules = [change_heights(x) for x in honest]
    # every change was committed, and every replica took each one at the same height
    assert all(s == schedules[0] for s in schedules), schedules
    assert [cfg for _, cfg in schedules[0]][-1] == FINAL
    assert len(schedules[0]) == 1 + len(CHANGES)
    assert all(x.replica.config == FINAL for x in honest)
    heights = [h for h, _ in schedules[0]]
    assert heights == sorted(set(heights))


@pytest.mark.parametrize("seed", range(4))
def test_parameter_changes_under_crashes_and_partitions(seed):
    sc = scenario(100 + seed, drop=0.1, crash_on_commit=0.05,
                  partitions=[(900, [{0, 1}, {2, 3}]), (1300, None), (1900, [{0}, {1, 2, 3}]), (2500, None)])
    sim = run(sc)
    honest = [x for x in sim.nodes if x.honest]
    assert all(change_heights(x) == change_heights(honest[0]) for x in honest)
    assert all(x.replica.config == FINAL for x in honest)


def test_the_checks_catch_a_replica_that_keeps_its_old_parameters():
    """A node that never hands the core the new config (as before live parameters) is
    caught: its core runs with a stale configuration after the first change."""
    sim = Sim(scenario(3, stale_config=(2,)), random.Random(3))
    with pytest.raises(Violation) as exc:
        sim.run()
    assert exc.value.kind in ("config", "timer")


def test_a_seed_replays_exactly():
    a, b = run(scenario(7)), run(scenario(7))
    assert a.stats == b.stats
    assert [x.chain for x in a.nodes] == [x.chain for x in b.nodes]
