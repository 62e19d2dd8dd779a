"""The node's clock report (status `clock`), the test-only clock offset hook, and the
inbox's reconnect callback (issue 13)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from node import runner
from node.metrics import NodeMetrics
from node.transport import NodeInbox
from node.views import clock_view

ROOT = Path(__file__).resolve().parents[2]
PEERS = [
    {"key": "aa" * 32, "connected": True, "clock_offset_ms": 4},
    {"key": "bb" * 32, "connected": True, "clock_offset_ms": -5001},
    {"key": "cc" * 32, "connected": False, "clock_offset_ms": 7},  # measured, but the session is gone
    {"key": "dd" * 32, "connected": True, "clock_offset_ms": None},  # never completed a handshake
]


@pytest.mark.parametrize("skew, ok", [(None, None), (0, True), (-999, True), (1000, False), (-5000, False)])
def test_clock_view_is_ok_below_half_the_block_time_tolerance(skew, ok):
    view = clock_view(skew, PEERS, 2000, 3)
    assert view == {"skew_ms": skew, "ok": ok, "tolerance_ms": 2000, "peers_measured": 2,
                    "blocks_refused_for_time": 3}


def test_clock_metrics_show_the_skew_and_each_measured_peer():
    m = NodeMetrics()
    m.set_clock(clock_view(-5000, PEERS, 2000, 2), PEERS, 2)
    text = m.render().decode()
    assert "cxl_clock_skew_ms -5000.0" in text
    assert 'cxl_peer_clock_offset_ms{peer="bbbbbbbbbbbbbbbb"} -5001.0' in text
    assert 'peer="dddddddddddddddd"' not in text
    assert "cxl_blocks_refused_for_time_total 2.0" in text
    m.set_clock(clock_view(None, [], 2000, 0), [], 0)  # no peer any more: no stale values
    text = m.render().decode()
    assert "cxl_clock_skew_ms NaN" in text and "cxl_peer_clock_offset_ms{" not in text


def _clock_in_subprocess(value: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CXL_TEST_CLOCK_OFFSET_MS"}
    if value is not None:
        env["CXL_TEST_CLOCK_OFFSET_MS"] = value
    code = "import time; from node.runner import now_ms; print(now_ms() - time.time_ns() // 1_000_000)"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


def test_the_test_only_clock_offset_shifts_the_node_clock_and_nothing_by_default():
    shifted = _clock_in_subprocess("-5000")
    assert shifted.returncode == 0, shifted.stderr
    assert -5100 <= int(shifted.stdout) <= -4900
    plain = _clock_in_subprocess(None)
    assert abs(int(plain.stdout)) <= 100


def test_a_malformed_clock_offset_is_refused_with_a_clear_message():
    bad = _clock_in_subprocess("5s")
    assert bad.returncode != 0
    assert "CXL_TEST_CLOCK_OFFSET_MS must be an integer number of ms, got '5s'" in bad.stderr


def test_the_inbox_passes_reconnects_to_the_node_and_tolerates_none():
    seen = []
    inbox = NodeInbox("c", list, lambda k, m: None, lambda k, t: None, lambda h, n: [],
                      on_peer_connected=seen.append)
    inbox.on_peer_connected(b"\x01" * 32)
    assert seen == [b"\x01" * 32]
    NodeInbox("c", list, lambda k, m: None, lambda k, t: None, lambda h, n: []).on_peer_connected(b"\x02" * 32)


class _SkewedTransport:
    """What the runner asks the p2p transport about clocks: the peers' median skew."""

    def __init__(self, skew_ms):
        self.skew_ms = skew_ms

    def clock_skew_ms(self):
        return self.skew_ms


def _future_block_runner(clock_offset_ms: int, skew_ms):
    from consensus import effects as fx
    from genesis.testnet import make_testnet
    from ledger import accounts
    from ledger.store.memory import MemoryStore
    from node.mempool import Mempool
    from node.runner import Runner

    net = make_testnet(n_validators=1)
    chain = net.chain(MemoryStore())
    mempool = Mempool(chain.chain_id, lambda a: (True, accounts.next_nonce(chain.state(), a)))
    r = Runner(chain, mempool, net.validators[0], _SkewedTransport(skew_ms),
               clock_ms=lambda: runner.now_ms() + clock_offset_ms)
    # a block stamped by a proposer whose clock is right, 5 s after this node's (slow) clock
    proposer_chain = net.chain(MemoryStore())
    block, _ = proposer_chain.build_block([], time_ms=runner.now_ms(), view=0,
                                          proposer=net.validators[0].public_key, last_cert=None, verified=set())
    r._validate(fx.ValidateBlock(0, 1, block.hash, block.encode()))
    return r


def test_a_node_whose_clock_is_behind_says_so_when_it_refuses_a_block(caplog):
    caplog.set_level("WARNING")
    r = _future_block_runner(-5000, skew_ms=-5000)
    verdict = r._local.pop()
    assert not verdict.valid and "bad_time" in verdict.reason
    assert r.clock_refusals == 1
    assert "for its time" in caplog.text and "this node's clock is off" in caplog.text


def test_a_node_agreeing_with_its_peers_blames_the_proposer(caplog):
    caplog.set_level("WARNING")
    r = _future_block_runner(-5000, skew_ms=3)
    assert r.clock_refusals == 1 and "the proposer's clock is off" in caplog.text


def test_a_valid_block_counts_no_clock_refusal(caplog):
    r = _future_block_runner(0, skew_ms=0)
    assert r._local.pop().valid and r.clock_refusals == 0
