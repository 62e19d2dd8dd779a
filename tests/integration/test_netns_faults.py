"""Issue 13 on a real network: 4 validator processes, each in its own network namespace
(tests/integration/netns.py), with partitions, delay and loss made by `tc netem` on each
node's egress, and clock skew by the node's test-only clock offset.

The bounds below are the issue's acceptance criteria, checked as behaviour bounds (a
healed partition *recovers*, a lossy link *keeps most of the throughput*) with the
measured figures printed; docs/performance.md records them. Needs root and iproute2;
skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import time

import pytest

from ledger.crypto import Signer
from ledger.encoding import sha256

from netharness import check_same_chain
from netns import NetnsNet, OpenLoad, netns_unavailable

REASON = netns_unavailable()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

PARAMS = {"view_timeout_ms": 2000, "block_interval_ms": 100}  # the chain defaults, spelled out
RATE = 200  # signed transfers per second offered, as in the issue's measurements
# Issue 13 asks for the first commit within 3 s of the heal. The network part (redial
# <= 1 s, re-sent state, new view) takes about 1 s; the first block of the new view is
# capped (node/runner.py FIRST_BLOCK_AFTER_VIEW_CHANGE_TXS) so it does not add the 1.3-2 s
# a full 2,000-transaction block took to validate on this shared 2-core machine. Measured
# 0.7-1.84 s with the cap (docs/performance.md); the old code took ~10 s.
HEAL_TARGET_S = 3.0
HEAL_BOUND_S = HEAL_TARGET_S
SENDERS = [Signer(sha256(b"netns-sender-%d" % i)) for i in range(200)]


def figures(name: str, **values) -> None:
    print(f"\nFIGURES {name} " + json.dumps(values, sort_keys=True))


@pytest.fixture
def make_net(tmp_path):
    nets: list[NetnsNet] = []

    def make(**kwargs) -> NetnsNet:
        net = NetnsNet(tmp_path / f"net{len(nets)}", 4, params=PARAMS, extra_members=SENDERS, **kwargs)
        nets.append(net)
        net.start_all()
        net.wait_ready()
        return net

    try:
        yield make
    finally:
        for net in nets:
            net.close()  # kills the nodes and deletes the namespaces, also on failure


def top_height(net: NetnsNet) -> int:
    return max(h or 0 for h in net.heights(list(range(net.n))).values())


def test_a_healed_two_two_partition_commits_again_within_seconds(make_net):
    net = make_net()
    load = OpenLoad(net, SENDERS, RATE, seconds=60)
    load.start()
    try:
        net.wait_height(3, timeout=30)
        net.partition([0, 1], [2, 3])
        cut_at = time.monotonic()
        time.sleep(2)
        stuck = top_height(net)
        time.sleep(20 - (time.monotonic() - cut_at))
        assert top_height(net) == stuck, "a 2|2 partition has no quorum: nothing may commit"
        # the sessions across the cut are dead by now, and status says so
        for i in range(4):
            peers = net.status(i)["peers"]
            across = [p for p in peers if p["connected"] and p["url"].split("//")[1].split(":")[0]
                      in {f"10.77.0.{j + 1}" for j in ((2, 3) if i < 2 else (0, 1))}]
            assert not across, f"node{i + 1} still shows sessions across the partition as connected: {across}"
        net.heal()
        healed_at = time.monotonic()
        while top_height(net) <= stuck:
            assert time.monotonic() - healed_at < 30, f"no commit within 30 s of the heal\n{net.diagnose()}"
            time.sleep(0.05)
        recovery_s = time.monotonic() - healed_at
    finally:
        load.stop()
    figures("partition_heal", recovery_s=round(recovery_s, 2), partition_s=20, offered_tx_s=RATE,
            issue_target_met=recovery_s <= HEAL_TARGET_S)
    check_same_chain(net, list(range(4)), timeout=30)
    assert recovery_s <= HEAL_BOUND_S, f"first commit {recovery_s:.2f} s after the heal (bound {HEAL_BOUND_S} s)"


def test_five_percent_loss_and_100_ms_delay_keep_80_percent_of_200_tx_s(make_net):
    net = make_net()
    net.shape(delay_ms=100, loss_pct=5)
    warmup_s, window_s = 5, 25
    load = OpenLoad(net, SENDERS, RATE, seconds=warmup_s + window_s + 5)
    load.start()
    try:
        time.sleep(warmup_s)
        c0, t0 = net.metric(0, "cxl_txs_committed_total"), time.monotonic()
        v0 = net.metric(0, "cxl_view_changes_total")
        time.sleep(window_s)
        c1, t1 = net.metric(0, "cxl_txs_committed_total"), time.monotonic()
        v1 = net.metric(0, "cxl_view_changes_total")
    finally:
        load.stop()
    rate = (c1 - c0) / (t1 - t0)
    figures("loss5_delay100", committed_tx_s=round(rate, 1), offered_tx_s=RATE, view_changes=v1 - v0,
            refused=load.refused, failed_posts=load.failed_posts)
    net.shape()
    check_same_chain(net, list(range(4)), timeout=60)
    assert rate >= 0.8 * RATE, f"{rate:.0f} tx/s committed of {RATE} offered under 5 % loss + 100 ms"


def test_a_node_with_a_skewed_clock_is_reported(make_net):
    # node 3 runs 5 s fast, node 4 5 s slow: two nodes off, two right
    net = make_net(clock_offsets_ms={2: 5_000, 3: -5_000})
    load = OpenLoad(net, SENDERS, 50, seconds=30)
    load.start()
    try:
        net.wait_height(3, nodes=[0, 1], timeout=40)
        deadline = time.monotonic() + 20
        while net.metric(3, "cxl_blocks_refused_for_time_total") < 1:
            assert time.monotonic() < deadline, "the slow node never refused a block for its time"
            time.sleep(0.2)
    finally:
        load.stop()
    clocks = {i: net.status(i)["clock"] for i in range(4)}
    figures("clock_skew", **{f"node{i + 1}": c["skew_ms"] for i, c in clocks.items()})
    assert 4_000 <= clocks[2]["skew_ms"] <= 6_000 and clocks[2]["ok"] is False
    assert -6_000 <= clocks[3]["skew_ms"] <= -4_000 and clocks[3]["ok"] is False
    for i in (0, 1):  # the median of {0, +5 s, -5 s}: an honest clock is not blamed
        assert abs(clocks[i]["skew_ms"]) <= 1_000 and clocks[i]["ok"] is True
        offsets = {p["url"]: p["clock_offset_ms"] for p in net.status(i)["peers"]}
        assert 4_000 <= offsets[net.nodes[2]["p2p"]] <= 6_000
        assert -6_000 <= offsets[net.nodes[3]["p2p"]] <= -4_000
    assert -6_000 <= net.metric(3, "cxl_clock_skew_ms") <= -4_000
    assert clocks[3]["blocks_refused_for_time"] >= 1
    log = (net.homes[3] / "node.log").read_text()
    assert "for its time" in log and "this node's clock is off" in log
