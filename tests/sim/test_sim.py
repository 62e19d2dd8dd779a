"""Seeded multi-replica runs. Every failure names its seed and how to replay it."""

from __future__ import annotations

import random

import pytest

from consensus.state import Faults

from .harness import Scenario, Sim
from .scenarios import HALTING, PROFILES, run_seed, twins_schedules

# (n, profile or None for "chosen by the seed", first seed, how many): 1433 scenarios.
BUDGET = (
    [(1, None, 0, 60), (5, None, 4000, 30), (6, None, 5000, 30)]
    + [(4, p, 1000, 80) for p in PROFILES]
    + [(7, p, 2000, 20) for p in PROFILES]
    + [(4, p, 6000, 10 if p == "flood" else 40) for p in HALTING]  # a flood run costs ~4 others
    + [(7, p, 7000, 3 if p == "flood" else 10) for p in HALTING]
    + [(None, None, 3000, 150)]
)


def run_many(n, profile, start, count, faults=Faults()):
    failures = []
    for seed in range(start, start + count):
        out = run_seed(seed, n, profile, faults)
        if out.violation is not None:
            failures.append(f"seed {seed}: {out.violation} (replay: scripts/sim --seed {seed}"
                            f"{f' --n {n}' if n else ''}{f' --fault {profile}' if profile else ''})")
    return failures


@pytest.mark.parametrize("n,profile,start,count", BUDGET, ids=lambda v: str(v))
def test_seeded_runs_hold_every_invariant(n, profile, start, count):
    assert run_many(n, profile, start, count) == []


def test_a_seed_replays_exactly():
    for seed in (3, 17, 2024):
        a, b = run_seed(seed), run_seed(seed)
        assert a.fingerprint == b.fingerprint and a.stats == b.stats
    assert run_seed(3).fingerprint != run_seed(4).fingerprint


def test_single_validator_commits_every_tx_without_timeouts():
    out = run_seed(0, 1, "clean")
    assert out.violation is None and out.stats.blocks >= 1 and out.stats.messages == 0


def test_censoring_primary_is_replaced_and_every_tx_commits():
    for seed in range(5):
        sc = Scenario(seed=seed, n=4, profile="censor", byzantine={0: "censor"}, txs=5)
        Sim(sc, random.Random(seed)).run()  # raises Violation("liveness") if censored


def test_twins_schedules_always_split_the_twins():
    rng = random.Random(1)
    for twin in range(4):
        for _, groups in twins_schedules(4, twin, rng, 3000):
            (a,) = [g for g in groups if twin in g]
            assert 4 not in a and set().union(*groups) == {0, 1, 2, 3, 4}


def test_garbage_and_byzantine_traffic_is_harmless_for_n7():
    sc = Scenario(seed=5, n=7, profile="garbage", byzantine={1: "garbage", 4: "equivocate"}, txs=6)
    stats = Sim(sc, random.Random(5)).run()
    assert stats.blocks >= 2
