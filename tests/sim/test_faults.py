"""The simulator has teeth: each deliberate bug behind `consensus.state.Faults` is found
within the CI seed budget, and the correct build passes the very same seeds."""

from __future__ import annotations

import random

import pytest

from consensus.state import Faults

from .harness import Sim, Violation
from .scenarios import make_scenario, run_seed

# fault -> (adversary profile to search, seeds to search, invariant expected to catch it)
CASES = {
    "commit_on_2f": (None, 50, {"validity", "agreement"}),
    "ignore_prepared": ("commit-loss", 250, {"agreement", "state-root"}),
    "forget_signed_on_restart": ("crash", 250, {"double-sign", "agreement"}),
}


@pytest.mark.parametrize("fault", sorted(CASES))
def test_simulator_finds_injected_bug_and_passes_correct_build(fault):
    profile, budget, kinds = CASES[fault]
    found = None
    for seed in range(budget):
        out = run_seed(seed, None, profile, Faults(**{fault: True}))
        if out.violation is not None:
            found = (seed, out.violation)
            break
    assert found is not None, f"{fault}: no invariant violation in {budget} seeds"
    seed, violation = found
    assert violation.kind in kinds, f"{fault} seed {seed}: unexpected {violation}"
    for s in range(seed + 1):
        out = run_seed(s, None, profile)
        assert out.violation is None, f"correct build fails seed {s}: {out.violation}"


def test_quorum_bug_is_caught_even_without_the_certificate_invariant():
    """With the direct certificate check off, deciding on 2f commits still shows up: honest
    replicas refuse the short certificates during catch-up, so laggards never finish."""
    for faults, expect_found in ((Faults(commit_on_2f=True), True), (Faults(), False)):
        found = None
        for seed in range(20):
            rng = random.Random(seed)
            sc = make_scenario(seed, rng, None, None, faults)
            sc.check_certificates = False
            try:
                Sim(sc, rng).run()
            except Violation as exc:
                found = exc
                break
        assert (found is not None) == expect_found, found
