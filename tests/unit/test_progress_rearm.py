"""Progress timer re-arm (issue 13 item 1): a (re)connected session times progress from the
reconnect; the timer armed before the partition is stale and starts no view change."""

from __future__ import annotations

from consensus.core import Replica
from consensus.effects import Broadcast, ScheduleTimeout
from consensus.events import PeerConnected, PendingTxs, TimeoutFired
from consensus.messages import ViewChange
from consensus.state import ConsensusConfig
from ledger.crypto import Signer
from ledger.encoding import sha256

KEYS = [Signer(sha256(b"rearm-key-%d" % i)) for i in range(4)]
VALS = tuple(k.public_key for k in KEYS)
CFG = ConsensusConfig(view_timeout_ms=100, rotation_blocks=0)


def progress_timers(effects):
    return [e for e in effects if isinstance(e, ScheduleTimeout) and e.kind == "progress"]


def view_changes(effects):
    return [e for e in effects if isinstance(e, Broadcast) and isinstance(e.msg, ViewChange)]


def backup():
    rep = Replica("cxl-test", KEYS[1], VALS, 1, CFG)  # not the primary of view 0
    rep.start()
    first = progress_timers(rep.on_event(PendingTxs(3)))
    assert len(first) == 1
    return rep, first[0]


def test_reconnect_rearms_the_progress_timer_and_the_old_one_is_stale():
    rep, old = backup()
    new = progress_timers(rep.on_event(PeerConnected(VALS[2])))
    assert len(new) == 1 and new[0].gen > old.gen
    assert rep.on_event(TimeoutFired("progress", old.view, old.height, old.gen)) == []
    assert not rep.changing
    assert view_changes(rep.on_event(TimeoutFired("progress", new[0].view, new[0].height, new[0].gen)))
    assert rep.changing


def test_rearm_happens_once_per_view_and_height():
    """A flapping peer cannot postpone the view change for ever."""
    rep, _ = backup()
    assert len(progress_timers(rep.on_event(PeerConnected(VALS[2])))) == 1
    assert progress_timers(rep.on_event(PeerConnected(VALS[2]))) == []
    assert progress_timers(rep.on_event(PeerConnected(VALS[3]))) == []


def test_no_timer_running_means_nothing_to_rearm():
    rep = Replica("cxl-test", KEYS[1], VALS, 1, CFG)
    rep.start()
    assert progress_timers(rep.on_event(PeerConnected(VALS[2]))) == []
