"""The replica as a pure state machine: events in, effects out."""

from __future__ import annotations

from consensus.core import Replica
from consensus.effects import (
    Broadcast, CommitBlock, Evidence, FetchBlocks, PersistSigned, RequestProposal, ScheduleTimeout, Send,
    ValidateBlock,
)
from consensus.events import (
    BlockVerdict, Committed, FetchedBlock, MessageReceived, PendingTxs, ProposalReady, TimeoutFired,
)
from consensus.messages import (
    Commit, NewView, Prepare, PrePrepare, ViewChange, make_commit, make_prepare, make_preprepare,
)
from consensus.state import ConsensusConfig, SignedState
from ledger.block import Certificate
from ledger.crypto import Signer
from ledger.encoding import sha256

CHAIN = "cxl-test"
KEYS = [Signer(sha256(b"core-key-%d" % i)) for i in range(7)]
CFG = ConsensusConfig(view_timeout_ms=100, rotation_blocks=0)


def block(tag: bytes):
    return sha256(tag), tag


def of(effects, kind):
    return [e for e in effects if isinstance(e, kind)]


def msgs(effects, kind):
    return [e.msg for e in effects if isinstance(e, (Broadcast, Send)) and isinstance(e.msg, kind)]


class Net:
    """Hand-driven n replicas: deliver every broadcast, answer validation with 'valid'."""

    def __init__(self, n: int, cfg=CFG):
        self.vals = tuple(k.public_key for k in KEYS[:n])
        self.reps = [Replica(CHAIN, KEYS[i], self.vals, 1, cfg) for i in range(n)]
        self.commits: dict[int, list[CommitBlock]] = {i: [] for i in range(n)}
        self.log: list = []
        self.down: set[int] = set()

    def handle(self, i: int, effects: list) -> None:
        queue = [(i, e) for e in effects]
        while queue:
            i, eff = queue.pop(0)
            self.log.append((i, eff))
            rep = self.reps[i]
            if isinstance(eff, Broadcast):
                for j, other in enumerate(self.reps):
                    if j != i and j not in self.down:
                        queue += [(j, e) for e in other.on_event(MessageReceived(eff.msg))]
            elif isinstance(eff, ValidateBlock):
                queue += [(i, e) for e in rep.on_event(BlockVerdict(eff.block_hash, True))]
            elif isinstance(eff, CommitBlock):
                self.commits[i].append(eff)
                queue += [(i, e) for e in rep.on_event(Committed(eff.height, eff.block_hash, self.vals))]

    def event(self, i: int, ev) -> list:
        out = self.reps[i].on_event(ev)
        self.handle(i, out)
        return out


def test_single_validator_commits_its_own_proposal_at_once():
    rep = Replica(CHAIN, KEYS[0], (KEYS[0].public_key,), 1, ConsensusConfig())
    assert rep.start() == [RequestProposal(0, 1)]
    h, b = block(b"b1")
    out = rep.on_event(ProposalReady(0, 1, h, b))
    kinds = [type(e) for e in out]
    assert kinds.index(PersistSigned) < kinds.index(Broadcast)  # persisted before it is sent
    (commit,) = of(out, CommitBlock)
    assert (commit.height, commit.block_hash, commit.block) == (1, h, b)
    commit.certificate.verify(CHAIN, [KEYS[0].public_key])
    assert not of(out, ScheduleTimeout)  # no timers for n = 1
    assert rep.on_event(PendingTxs(3)) == []
    assert rep.on_event(Committed(1, h, (KEYS[0].public_key,))) == [RequestProposal(0, 2)]


def test_four_replicas_commit_one_block_with_a_quorum_certificate():
    net = Net(4)
    assert net.reps[0].start() == [RequestProposal(0, 1)]
    h, b = block(b"b1")
    net.event(0, ProposalReady(0, 1, h, b))
    for i in range(4):
        (c,) = net.commits[i]
        assert (c.height, c.block_hash) == (1, h)
        c.certificate.verify(CHAIN, list(net.vals))
        assert len(c.certificate.signatures) >= 3
    assert all(r.height == 2 for r in net.reps)
    # every send of a replica's own signature comes after a PersistSigned covering it
    for i in range(4):
        mine = [e for j, e in net.log if j == i]
        for k, e in enumerate(mine):
            if isinstance(e, Broadcast) and e.msg.sender == KEYS[i].public_key:
                assert any(isinstance(p, PersistSigned) for p in mine[:k])


def test_silent_primary_is_replaced_and_timeouts_double():
    net = Net(4)
    net.down.add(0)  # primary of view 0 never speaks
    for i in (1, 2, 3):
        (timer,) = [t for t in of(net.event(i, PendingTxs(2)), ScheduleTimeout) if t.kind == "progress"]
        assert (timer.kind, timer.view, timer.after_ms) == ("progress", 0, 100)
    # replicas 1 and 2 time out; replica 3 joins on f+1 = 2 view changes for a higher view
    out1 = net.event(1, TimeoutFired("progress", 0, 1, net.reps[1].progress_gen))
    assert msgs(out1, ViewChange)[0].new_view == 1
    net.event(2, TimeoutFired("progress", 0, 1, net.reps[2].progress_gen))
    assert all(r.view == 1 and not r.changing for r in net.reps[1:])
    nv = [e.msg for _, e in net.log if isinstance(e, Broadcast) and isinstance(e.msg, NewView)]
    assert len(nv) == 1 and nv[0].sender == KEYS[1].public_key and nv[0].preprepare is None
    assert any(isinstance(e, RequestProposal) and e.view == 1 for _, e in net.log)
    h, b = block(b"b1")
    net.event(1, ProposalReady(1, 1, h, b))
    assert all(net.commits[i] and net.commits[i][0].block_hash == h for i in (1, 2, 3))


def test_failed_views_double_the_timeout_and_a_lone_replica_does_not_run_ahead():
    vals = tuple(k.public_key for k in KEYS[:4])
    rep = Replica(CHAIN, KEYS[2], vals, 1, CFG)
    rep.on_event(PendingTxs(1))

    def timer(out):
        (t,) = [t for t in of(out, ScheduleTimeout) if t.kind == "viewchange"]
        return t

    first = timer(rep.on_event(TimeoutFired("progress", 0, 1, rep.progress_gen)))
    # nobody else asked for view 1: ask again (same signed bytes), wait twice as long
    out = rep.on_event(TimeoutFired("viewchange", 1, 1))
    second = timer(out)
    assert (first.view, second.view) == (1, 1) and second.after_ms == 2 * first.after_ms
    assert msgs(out, ViewChange)[0] == rep.vc_latest[KEYS[2].public_key]
    # once f others want at least this view too, the next timeout moves on to view 2
    other = Replica(CHAIN, KEYS[3], vals, 1, CFG)
    other.on_event(PendingTxs(1))
    (vc,) = msgs(other.on_event(TimeoutFired("progress", 0, 1, other.progress_gen)), ViewChange)
    rep.on_event(MessageReceived(vc))
    third = timer(rep.on_event(TimeoutFired("viewchange", 1, 1)))
    assert third.view == 2 and rep.view == 2 and third.after_ms == 2 * second.after_ms


def test_new_primary_reproposes_the_prepared_block():
    net = Net(4)
    h, b = block(b"prepared")
    # everyone prepares block b in view 0 but no commit gets through
    net.reps[0].start()
    pp = make_preprepare(KEYS[0], CHAIN, 0, 1, h, b)
    voted = []
    for i in (1, 2, 3):
        net.reps[i].on_event(MessageReceived(pp))
        net.reps[i].on_event(BlockVerdict(h, True))
    prepares = [make_prepare(KEYS[i], CHAIN, 0, 1, h) for i in (1, 2, 3)]
    for i in (1, 2, 3):
        for p in prepares:
            if p.sender != KEYS[i].public_key:
                voted += msgs(net.reps[i].on_event(MessageReceived(p)), Commit)
    assert all(r.prepared is not None and r.prepared.block_hash == h for r in net.reps[1:])
    assert len(voted) == 3  # every replica voted commit; we drop those votes
    net.down.add(0)
    net.event(1, PendingTxs(1))
    net.event(1, TimeoutFired("progress", 0, 1, net.reps[1].progress_gen))
    net.event(2, TimeoutFired("progress", 0, 1, net.reps[2].progress_gen))
    nv = [e.msg for _, e in net.log if isinstance(e, Broadcast) and isinstance(e.msg, NewView)][0]
    assert nv.preprepare is not None and nv.preprepare.block_hash == h and nv.preprepare.view == 1
    assert all(net.commits[i][0].block_hash == h for i in (1, 2, 3))


def test_equivocation_becomes_evidence():
    vals = tuple(k.public_key for k in KEYS[:4])
    rep = Replica(CHAIN, KEYS[1], vals, 1, CFG)
    a, b = block(b"a"), block(b"b")
    rep.on_event(MessageReceived(make_preprepare(KEYS[0], CHAIN, 0, 1, *a)))
    out = rep.on_event(MessageReceived(make_preprepare(KEYS[0], CHAIN, 0, 1, *b)))
    (ev,) = of(out, Evidence)
    assert ev.sender == KEYS[0].public_key and {ev.msg_a.block_hash, ev.msg_b.block_hash} == {a[0], b[0]}
    rep.on_event(MessageReceived(make_commit(KEYS[2], CHAIN, 0, 1, a[0])))
    (ev,) = of(rep.on_event(MessageReceived(make_commit(KEYS[2], CHAIN, 0, 1, b[0]))), Evidence)
    assert isinstance(ev.msg_a, Commit) and ev.sender == KEYS[2].public_key


def test_restart_never_signs_a_second_prepare_at_the_same_position():
    vals = tuple(k.public_key for k in KEYS[:4])
    rep = Replica(CHAIN, KEYS[1], vals, 1, CFG)
    a, b = block(b"a"), block(b"b")
    rep.on_event(MessageReceived(make_preprepare(KEYS[0], CHAIN, 0, 1, *a)))
    out = rep.on_event(BlockVerdict(a[0], True))
    record = of(out, PersistSigned)[-1].record
    assert msgs(out, Prepare)
    restored = Replica(CHAIN, KEYS[1], vals, 1, CFG, SignedState.decode(record.encode()))
    restored.start()
    restored.on_event(MessageReceived(make_preprepare(KEYS[0], CHAIN, 0, 1, *b)))
    assert not msgs(restored.on_event(BlockVerdict(b[0], True)), Prepare)


def test_junk_inputs_are_dropped_without_harm():
    vals = tuple(k.public_key for k in KEYS[:4])
    rep = Replica(CHAIN, KEYS[1], vals, 5, CFG)
    outsider = Signer(sha256(b"outsider"))
    assert rep.on_event(MessageReceived(make_prepare(outsider, CHAIN, 0, 5, sha256(b"x")))) == []
    far = rep.on_event(MessageReceived(make_prepare(KEYS[2], CHAIN, 0, 5000, sha256(b"x"))))
    assert of(far, FetchBlocks) and not rep.future  # not buffered, but we look for blocks
    rep.view = 3
    assert rep.on_event(MessageReceived(make_preprepare(KEYS[0], CHAIN, 1, 5, *block(b"old")))) == []
    assert rep.pp is None


def test_catch_up_verifies_certificates_before_committing():
    vals = tuple(k.public_key for k in KEYS[:4])
    rep = Replica(CHAIN, KEYS[3], vals, 1, CFG)
    h, b = block(b"fetched")
    votes = {k.public_key: make_commit(k, CHAIN, 0, 1, h).signature for k in KEYS[:3]}
    good = Certificate.build(1, 0, h, votes)
    short = Certificate.build(1, 0, h, dict(list(votes.items())[:2]))
    assert rep.on_event(FetchedBlock(1, h, b, short)) == []
    forged = Certificate.build(1, 0, h, {k: b"\x01" * 64 for k in votes})
    assert rep.on_event(FetchedBlock(1, h, b, forged)) == []
    (c,) = of(rep.on_event(FetchedBlock(1, h, b, good)), CommitBlock)
    assert c.certificate == good
    # commits for a height we have no block for make us fetch it
    rep2 = Replica(CHAIN, KEYS[3], vals, 1, CFG)
    out = []
    for k in KEYS[:3]:
        out += rep2.on_event(MessageReceived(make_commit(k, CHAIN, 0, 1, h)))
    assert of(out, FetchBlocks) and not of(out, CommitBlock)


def test_invalid_proposal_triggers_a_view_change():
    vals = tuple(k.public_key for k in KEYS[:4])
    rep = Replica(CHAIN, KEYS[2], vals, 1, CFG)
    h, b = block(b"bad")
    assert of(rep.on_event(MessageReceived(make_preprepare(KEYS[0], CHAIN, 0, 1, h, b))), ValidateBlock)
    out = rep.on_event(BlockVerdict(h, False, "bad tx"))
    assert msgs(out, ViewChange)[0].new_view == 1 and not msgs(out, Prepare)


def test_forced_rotation_moves_the_primary_every_r_blocks():
    vals = tuple(k.public_key for k in KEYS[:4])
    rep = Replica(CHAIN, KEYS[1], vals, 1, ConsensusConfig(rotation_blocks=2))
    assert [rep.primary(0, h) for h in (1, 2, 3, 4, 5)] == [vals[0], vals[0], vals[1], vals[1], vals[2]]
    assert rep.on_event(Committed(2, sha256(b"x"), vals)) == [RequestProposal(0, 3)]


# -- a lone view change is moot once its height is committed (docs/consensus.md §4) --------

def committed_cert(view: int, height: int, h: bytes, signers=(0, 1, 2)) -> Certificate:
    votes = {KEYS[i].public_key: make_commit(KEYS[i], CHAIN, view, height, h).signature for i in signers}
    return Certificate.build(height, view, h, votes)


def test_new_view_needs_every_view_change_scoped_to_its_height():
    from consensus import proofs
    from consensus.messages import make_new_view, make_view_change
    vals = tuple(k.public_key for k in KEYS[:4])
    at4 = [make_view_change(KEYS[i], CHAIN, 1, 4, None) for i in (1, 2, 3)]
    stale = make_view_change(KEYS[3], CHAIN, 1, 2, None)  # sent at height 3, then moot
    ok = make_new_view(KEYS[1], CHAIN, 1, 5, tuple(at4), None)
    assert proofs.new_view_ok(ok, vals, 0, 3) == (True, None)
    mixed = make_new_view(KEYS[1], CHAIN, 1, 5, (at4[0], at4[1], stale), None)
    assert proofs.new_view_ok(mixed, vals, 0, 3) == (False, None)


def test_lone_view_change_falls_back_to_the_view_of_the_certificate_and_votes_again():
    vals = tuple(k.public_key for k in KEYS[:4])
    rep = Replica(CHAIN, KEYS[3], vals, 1, CFG)
    rep.on_event(PendingTxs(1))
    rep.on_event(TimeoutFired("progress", 0, 1, rep.progress_gen))  # cut off: asks for view 1, alone
    assert (rep.view, rep.changing) == (1, True)
    # the others decided height 1 in view 0 without it; it learns so by catch-up
    h1, b1 = block(b"h1")
    (commit,) = of(rep.on_event(FetchedBlock(1, h1, b1, committed_cert(0, 1, h1))), CommitBlock)
    out = rep.on_event(Committed(1, h1, vals, commit.certificate))
    assert (rep.view, rep.changing, rep.height) == (0, False, 2)
    (rec,) = [e.record for e in of(out, PersistSigned)]
    assert (rec.current_view, rec.changing) == (0, False)
    # it votes again in view 0 at height 2 ...
    h2, b2 = block(b"h2")
    rep.on_event(MessageReceived(make_preprepare(KEYS[0], CHAIN, 0, 2, h2, b2)))
    (prep,) = msgs(rep.on_event(BlockVerdict(h2, True)), Prepare)
    assert (prep.view, prep.height) == (0, 2)
    # ... and a restart from its record keeps it there, refusing what it signed
    again = Replica(CHAIN, KEYS[3], vals, 2, CFG, rep.rec, last_certificate=commit.certificate)
    assert (again.view, again.changing) == (0, False) and not msgs(again.start(), ViewChange)


def test_restart_after_a_lone_view_change_whose_height_committed_meanwhile():
    vals = tuple(k.public_key for k in KEYS[:4])
    rep = Replica(CHAIN, KEYS[3], vals, 1, CFG)
    rep.on_event(PendingTxs(1))
    rep.on_event(TimeoutFired("progress", 0, 1, rep.progress_gen))
    h1, _ = block(b"h1")
    # crashed while changing; the node caught up height 1 before the core came back
    again = Replica(CHAIN, KEYS[3], vals, 2, CFG, rep.rec, last_certificate=committed_cert(0, 1, h1))
    out = again.start()
    assert (again.view, again.changing) == (0, False) and not msgs(out, ViewChange)
    assert [(e.record.current_view, e.record.changing) for e in of(out, PersistSigned)] == [(0, False)]


def test_new_view_for_a_lower_height_waits_while_prepared_at_ours():
    """Rule R2: prepared (maybe commit-voted) at height 2 in view 0, a replica does not enter
    a view through a NewView for height 1, which says nothing about height 2."""
    from consensus.messages import make_new_view, make_view_change
    vals = tuple(k.public_key for k in KEYS[:4])
    rep = Replica(CHAIN, KEYS[2], vals, 2, CFG)
    h2, b2 = block(b"h2")
    rep.on_event(MessageReceived(make_preprepare(KEYS[0], CHAIN, 0, 2, h2, b2)))
    rep.on_event(BlockVerdict(h2, True))
    for i in (1, 3):
        rep.on_event(MessageReceived(make_prepare(KEYS[i], CHAIN, 0, 2, h2)))
    assert rep.prepared is not None and rep.rec.signed("commit") == h2
    vcs = tuple(make_view_change(KEYS[i], CHAIN, 1, 0, None) for i in (0, 1, 3))
    nv = make_new_view(KEYS[1], CHAIN, 1, 1, vcs, None)
    assert not rep.on_event(MessageReceived(nv)) and rep.view == 0
    # a view-1 proposal at height 2 is not voted on meanwhile
    other, ob = block(b"other")
    assert not msgs(rep.on_event(MessageReceived(make_preprepare(KEYS[1], CHAIN, 1, 2, other, ob))), Prepare)
    # once height 2 is committed, the NewView is taken up for height 3
    out = []
    for i in (0, 1):
        out += rep.on_event(MessageReceived(make_commit(KEYS[i], CHAIN, 0, 2, h2)))
    (commit,) = of(out, CommitBlock)
    assert rep.view == 0
    rep.on_event(Committed(2, h2, vals, commit.certificate))
    assert (rep.view, rep.changing, rep.height) == (1, False, 3)
