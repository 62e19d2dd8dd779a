"""PeerConnected: on a (re)opened session the replica sends its current state again, so a
healed partition commits without waiting for any timeout (issue 13)."""

from __future__ import annotations

from consensus.core import Replica
from consensus.effects import (
    Broadcast, CommitBlock, PersistSigned, RequestProposal, ScheduleTimeout, Send, ValidateBlock,
)
from consensus.events import (
    BlockVerdict, Committed, MessageReceived, PeerConnected, PendingTxs, ProposalReady, TimeoutFired,
)
from consensus.messages import Commit, NewView, Prepare, PrePrepare, ViewChange
from consensus.state import ConsensusConfig
from ledger.crypto import Signer
from ledger.encoding import sha256

CHAIN = "cxl-test"
KEYS = [Signer(sha256(b"reconnect-key-%d" % i)) for i in range(4)]
VALS = tuple(k.public_key for k in KEYS)
CFG = ConsensusConfig(view_timeout_ms=100, rotation_blocks=0)


class PartitionedNet:
    """Four hand-driven replicas; a message crosses only between replicas of one side.
    Timers are recorded, never fired by themselves; what a cut link carried is lost (a dead
    TCP session), as in the issue's measurements."""

    def __init__(self):
        self.reps = [Replica(CHAIN, k, VALS, 1, CFG) for k in KEYS]
        self.side = {i: 0 for i in range(4)}
        self.timers: list[tuple[int, ScheduleTimeout]] = []
        self.commits: dict[int, list[CommitBlock]] = {i: [] for i in range(4)}
        self.proposals: list[tuple[int, RequestProposal]] = []

    def linked(self, a: int, b: int) -> bool:
        return self.side[a] == self.side[b]

    def deliver(self, i: int, effects: list) -> None:
        queue = [(i, e) for e in effects]
        while queue:
            i, eff = queue.pop(0)
            rep = self.reps[i]
            if isinstance(eff, Broadcast):
                for j in range(4):
                    if j != i and self.linked(i, j):
                        queue += [(j, e) for e in self.reps[j].on_event(MessageReceived(eff.msg))]
            elif isinstance(eff, Send):
                j = VALS.index(eff.to)
                if self.linked(i, j):
                    queue += [(j, e) for e in self.reps[j].on_event(MessageReceived(eff.msg))]
            elif isinstance(eff, ValidateBlock):
                queue += [(i, e) for e in rep.on_event(BlockVerdict(eff.block_hash, True))]
            elif isinstance(eff, RequestProposal):
                self.proposals.append((i, eff))
            elif isinstance(eff, CommitBlock):
                self.commits[i].append(eff)
                queue += [(i, e) for e in rep.on_event(Committed(eff.height, eff.block_hash, VALS))]
            elif isinstance(eff, ScheduleTimeout):
                self.timers.append((i, eff))

    def event(self, i: int, ev) -> list:
        out = self.reps[i].on_event(ev)
        self.deliver(i, out)
        return out

    def fire(self, i: int, kind: str) -> None:
        """Fire replica i's latest pending timer of `kind` (the partition lasts long)."""
        for k in range(len(self.timers) - 1, -1, -1):
            j, t = self.timers[k]
            if j == i and t.kind == kind:
                del self.timers[k]
                self.event(i, TimeoutFired(t.kind, t.view, t.height, t.gen))
                return
        raise AssertionError(f"replica {i} has no {kind} timer")

    def propose_pending(self) -> None:
        pending, self.proposals = self.proposals, []
        for i, req in pending:
            rep = self.reps[i]
            if (rep.view, rep.height) == (req.view, req.height):
                tag = b"block-%d-%d" % (req.view, req.height)
                self.event(i, ProposalReady(req.view, req.height, sha256(tag), tag))


def reconnect_all(net: PartitionedNet) -> None:
    for i in range(4):
        for j in range(4):
            if i != j:
                net.event(i, PeerConnected(VALS[j]))


def test_a_healed_two_two_partition_commits_without_a_timeout():
    net = PartitionedNet()
    for i in range(4):
        net.deliver(i, net.reps[i].start())
        net.event(i, PendingTxs(5))
    net.side = {0: 0, 1: 0, 2: 1, 3: 1}
    net.propose_pending()  # replica 0 (primary of view 0) proposes; only replica 1 hears it
    assert not any(net.commits.values())
    # the partition lasts: every progress timer fires, then each side escalates its view
    # change once more on its own (2 of 4 is no quorum for a NewView)
    for i in range(4):
        net.fire(i, "progress")
    for i in (0, 1):
        net.fire(i, "viewchange")
    assert [r.view for r in net.reps] == [2, 2, 1, 1] and all(r.changing for r in net.reps)
    net.timers.clear()  # from here on no timer fires: only the reconnection may help

    net.side = {i: 0 for i in range(4)}  # healed: new sessions, nothing old is delivered again
    reconnect_all(net)
    net.propose_pending()
    assert all(not r.changing and r.view == 2 for r in net.reps)
    for i in range(4):
        assert [c.height for c in net.commits[i]] == [1], f"replica {i} did not commit"
    assert len({c[0].block_hash for c in net.commits.values()}) == 1


def test_without_the_reconnect_events_the_healed_partition_stays_stuck():
    """The control: what the old code did (nothing on reconnect) leaves everyone waiting
    for a view-change timer, with timeouts already doubled by the failed views."""
    net = PartitionedNet()
    for i in range(4):
        net.deliver(i, net.reps[i].start())
        net.event(i, PendingTxs(5))
    net.side = {0: 0, 1: 0, 2: 1, 3: 1}
    net.propose_pending()
    for i in range(4):
        net.fire(i, "progress")
    net.side = {i: 0 for i in range(4)}
    net.propose_pending()
    assert not any(net.commits.values()) and all(r.changing for r in net.reps)


def test_a_replica_behind_the_last_commit_gets_its_certificate_on_reconnect():
    net = PartitionedNet()
    for i in range(4):
        net.deliver(i, net.reps[i].start())
        net.event(i, PendingTxs(1))
    net.side = {0: 0, 1: 0, 2: 0, 3: 1}  # replica 3 cut off: the others commit height 1
    net.propose_pending()
    assert [len(net.commits[i]) for i in range(4)] == [1, 1, 1, 0]
    out = net.reps[0].on_event(PeerConnected(VALS[3]))
    sent = [e for e in out if isinstance(e, Send)]
    assert sent and all(e.to == VALS[3] and isinstance(e.msg, Commit) and e.msg.height == 1 for e in sent)
    assert len(sent) >= 3  # the whole certificate: enough to decide (or know what to fetch)
    assert not any(isinstance(e, PersistSigned) for e in out)  # nothing new was signed


def test_reconnect_resends_only_own_signatures_of_the_current_round():
    net = PartitionedNet()
    for i in range(4):
        net.deliver(i, net.reps[i].start())
    net.side = {0: 0, 1: 0, 2: 1, 3: 1}
    net.propose_pending()
    primary, backup = net.reps[0], net.reps[1]
    out = primary.on_event(PeerConnected(VALS[2]))
    assert [type(e.msg) for e in out if isinstance(e, Send)] == [PrePrepare]
    out = backup.on_event(PeerConnected(VALS[2]))
    sent = [e.msg for e in out if isinstance(e, Send)]
    assert [type(m) for m in sent] == [Prepare] and sent[0].sender == VALS[1]
    net.deliver(1, out)  # keeps the re-armed progress timer (replica 2 is still cut off)
    # a view change in progress: its own ViewChange, nothing of the abandoned view
    net.fire(1, "progress")
    sent = [e.msg for e in backup.on_event(PeerConnected(VALS[3])) if isinstance(e, Send)]
    assert [type(m) for m in sent] == [ViewChange] and sent[0].new_view == 1
    assert primary.on_event(PeerConnected(VALS[0])) == []  # itself
    assert primary.on_event(PeerConnected(b"\x01" * 32)) == []  # not a validator


def test_reconnect_in_a_view_made_by_a_new_view_sends_that_proof():
    net = PartitionedNet()
    for i in range(4):
        net.deliver(i, net.reps[i].start())
        net.event(i, PendingTxs(1))
    for i in (1, 2):  # the primary of view 0 stays silent: view 1 is made by replica 1
        net.fire(i, "progress")
    assert all(r.view == 1 and not r.changing for r in net.reps)
    sent = [e.msg for e in net.reps[1].on_event(PeerConnected(VALS[0])) if isinstance(e, Send)]
    assert [type(m) for m in sent] == [NewView] and sent[0].view == 1
