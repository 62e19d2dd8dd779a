"""node.health: the stall reason, the /health verdict and when the stall is logged."""

from __future__ import annotations

import pytest

from ledger.block import quorum
from node.health import STALL_VIEW_CHANGES, StallNotice, assess, quorum_of, stalled_reason


@pytest.mark.parametrize("n", range(1, 12))
def test_quorum_matches_the_ledger(n):
    assert quorum_of(n) == quorum(n)


@pytest.mark.parametrize("validators, connected, is_validator, views, want", [
    (1, 0, True, 0, None),                       # a network of one always has its quorum
    (4, 3, True, 0, None),
    (4, 2, True, 0, None),                       # 3 of 4: quorum
    (4, 1, True, 0, "no_quorum"),                # 2 of 4
    (4, 0, True, 0, "no_quorum"),
    (4, 3, False, 0, None),                      # an observer connected to 3 validators
    (4, 2, False, 0, "no_quorum"),               # ... to only 2: it cannot follow a quorum
    (7, 3, True, 0, "no_quorum"),                # 5 needed of 7
    (7, 4, True, 0, None),
    (7, 3, True, STALL_VIEW_CHANGES, "no_quorum"),  # the sharper reason first
    (4, 3, True, STALL_VIEW_CHANGES - 1, None),
    (4, 3, True, STALL_VIEW_CHANGES, "view_changes"),
    (1, 0, True, STALL_VIEW_CHANGES + 5, "view_changes"),
])
def test_stalled_reason(validators, connected, is_validator, views, want):
    assert stalled_reason(validators=validators, connected_validators=connected, is_validator=is_validator,
                          views_since_commit=views) == want


def _status(n=4, connected=3, catching_up=False, stalled=None):
    return {"validators": [{"key": str(i)} for i in range(n)], "peers_connected": connected,
            "catching_up": catching_up, "stalled_reason": stalled}


@pytest.mark.parametrize("status, verdict, codes", [
    (_status(), "ready", []),
    (_status(n=1, connected=0), "ready", []),
    (_status(connected=0, stalled="no_quorum"), "degraded", ["no_peers", "no_quorum"]),
    (_status(connected=1, stalled="no_quorum"), "degraded", ["no_quorum"]),
    (_status(catching_up=True), "degraded", ["behind"]),
    (_status(stalled="view_changes"), "degraded", ["stalled"]),
    (_status(connected=0, catching_up=True, stalled="no_quorum"), "degraded", ["no_peers", "no_quorum", "behind"]),
])
def test_assess(status, verdict, codes):
    out = assess(status)
    assert out["status"] == verdict
    assert [r["code"] for r in out["reasons"]] == codes
    assert all(r["message"] for r in out["reasons"])


def test_stall_notice_logs_at_start_then_rate_limited_then_recovery():
    notice = StallNotice(every_ms=30_000, grace_ms=0)
    steps = [
        (None, 0, None),
        ("no_quorum", 1_000, ("stalled", "no_quorum")),
        ("no_quorum", 2_000, None),                       # the same reason: quiet...
        ("no_quorum", 30_999, None),
        ("no_quorum", 31_000, ("stalled", "no_quorum")),  # ... until every_ms passed
        ("view_changes", 32_000, ("stalled", "view_changes")),  # a new reason: at once
        (None, 33_000, ("recovered", "view_changes")),
        (None, 90_000, None),
        ("no_quorum", 91_000, ("stalled", "no_quorum")),
    ]
    for reason, now, want in steps:
        assert notice.check(reason, now) == want, (reason, now)


def test_stall_notice_waits_out_the_grace_period():
    notice = StallNotice(every_ms=30_000, grace_ms=5_000)
    steps = [
        ("no_quorum", 0, None),                   # peers still connecting at start
        ("no_quorum", 4_999, None),
        (None, 5_500, None),                      # over before it was logged: nothing to say
        ("no_quorum", 6_000, None),               # a new stall: a new grace period
        ("no_quorum", 11_000, ("stalled", "no_quorum")),
        ("view_changes", 12_000, ("stalled", "view_changes")),
        (None, 13_000, ("recovered", "view_changes")),
    ]
    for reason, now, want in steps:
        assert notice.check(reason, now) == want, (reason, now)


def test_a_duplicate_node_key_degrades_health_with_its_reason():
    status = _status() | {"duplicate_key": {"peer": "ab" * 32, "since_ms": 1, "seen": 1}}
    verdict = assess(status)
    assert verdict["status"] == "degraded"
    assert [r["code"] for r in verdict["reasons"]] == ["duplicate_key"]
    assert "stopped signing" in verdict["reasons"][0]["message"]
    assert assess(_status() | {"duplicate_key": None})["status"] == "ready"


def test_a_full_node_is_never_without_quorum_only_without_peers_or_behind():
    from node.health import assess

    four = [{"key": "k%d" % i} for i in range(4)]
    base = {"role": "full", "validators": four, "stalled_reason": None, "catching_up": False}
    assert assess(dict(base, peers_connected=1)) == {"status": "ready", "reasons": []}
    assert [r["code"] for r in assess(dict(base, peers_connected=0))["reasons"]] == ["no_peers"]
    # a full node following a one-validator chain needs its peer as much
    assert [r["code"] for r in assess(dict(base, validators=four[:1], peers_connected=0))["reasons"]] == ["no_peers"]
    assert [r["code"] for r in assess(dict(base, peers_connected=1, catching_up=True))["reasons"]] == ["behind"]
