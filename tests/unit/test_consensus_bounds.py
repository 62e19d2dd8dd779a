"""One byzantine validator must not halt, wedge or flood a replica (issue 9): each test
drives one replica by hand with what a faulty peer could send, and checks that the
replica still makes progress and that what it keeps stays bounded."""

from __future__ import annotations

from consensus import bookkeeping, core
from consensus.core import Replica
from consensus.effects import Broadcast, CommitBlock, Evidence, FetchBlocks, Send, ValidateBlock
from consensus.events import BlockVerdict, Committed, MessageReceived, PendingTxs, TimeoutFired
from consensus.messages import (
    Commit, NewView, Prepare, PreparedCert, PrePrepare, ViewChange, make_commit, make_new_view, make_prepare,
    make_preprepare, make_view_change,
)
from consensus.state import ConsensusConfig
from ledger.block import Certificate
from ledger.crypto import Signer
from ledger.encoding import sha256

CHAIN = "cxl-test"
KEYS = [Signer(sha256(b"bounds-key-%d" % i)) for i in range(6)]
VALS = tuple(k.public_key for k in KEYS[:4])
CFG = ConsensusConfig(view_timeout_ms=100, rotation_blocks=0)  # primary of view v: VALS[v % 4]
NOSIG = b"\x00" * 64  # the core trusts the node's signature check; these tests skip it


def block(tag: bytes):
    return sha256(tag), tag


def of(effects, kind):
    return [e for e in effects if isinstance(e, kind)]


def sent(effects, kind):
    return [e.msg for e in effects if isinstance(e, (Broadcast, Send)) and isinstance(e.msg, kind)]


def feed(rep: Replica, *msgs) -> list:
    out = []
    for m in msgs:
        out += rep.on_event(MessageReceived(m))
    return out


# -- item 1: an unproven claim of a committed height ----------------------------------------

def test_a_view_change_claiming_a_huge_height_does_not_hold_back_the_new_view():
    """KEYS[1] is the primary of view 1. KEYS[3] claims to have committed height 10^6:
    the new primary may fetch from it, but must still build its NewView from the three
    ViewChanges scoped to its height (before: it waited for that fetch forever)."""
    rep = Replica(CHAIN, KEYS[1], VALS, 1, CFG)
    rep.on_event(PendingTxs(1))
    out = rep.on_event(TimeoutFired("progress", 0, 1, rep.progress_gen))
    assert sent(out, ViewChange) and rep.changing and rep.view == 1
    out = feed(rep, make_view_change(KEYS[3], CHAIN, 1, 1_000_000, None))
    assert of(out, FetchBlocks)  # a hint is still worth a fetch
    out = feed(rep, make_view_change(KEYS[0], CHAIN, 1, 0, None), make_view_change(KEYS[2], CHAIN, 1, 0, None))
    (nv,) = sent(out, NewView)
    assert (nv.view, nv.height) == (1, 1)
    assert sorted(v.sender for v in nv.view_changes) == sorted([VALS[0], VALS[1], VALS[2]])
    assert not rep.changing


# -- item 2: an invalid verdict is not cached for the whole height --------------------------

def test_an_invalid_verdict_holds_for_its_view_and_a_re_proposal_is_validated_again():
    """KEYS[3] finds block B invalid in view 0 (its clock was behind the block's time),
    asks for view 1; the NewView of view 1 re-proposes B, prepared by the others. The
    replica must validate B again, not leave view 1 at once (before: every view that
    re-proposed B was left, and the chain halted at that height)."""
    rep = Replica(CHAIN, KEYS[3], VALS, 1, CFG)
    h, b = block(b"B")
    pp0 = make_preprepare(KEYS[0], CHAIN, 0, 1, h, b)
    assert of(feed(rep, pp0), ValidateBlock)
    out = rep.on_event(BlockVerdict(h, False, "bad_time: too far in the future"))
    assert sent(out, ViewChange)[0].new_view == 1
    cert = PreparedCert(pp0, tuple(make_prepare(k, CHAIN, 0, 1, h) for k in KEYS[1:3]))
    vcs = (make_view_change(KEYS[0], CHAIN, 1, 0, None), make_view_change(KEYS[1], CHAIN, 1, 0, cert),
           make_view_change(KEYS[2], CHAIN, 1, 0, cert))
    nv = make_new_view(KEYS[1], CHAIN, 1, 1, vcs, make_preprepare(KEYS[1], CHAIN, 1, 1, h, b))
    out = feed(rep, nv)
    assert rep.view == 1 and not rep.changing
    (again,) = of(out, ValidateBlock)
    assert again.block_hash == h and again.block == b
    out = rep.on_event(BlockVerdict(h, True))
    assert [p.block_hash for p in sent(out, Prepare)] == [h]
    assert rep.view == 1


def test_bytes_found_invalid_are_not_kept_against_the_digest():
    """Even if other bytes under B's digest got past the node (a swapping primary), the
    replica keeps no bytes against a digest before they are found valid: the re-proposal's
    bytes are validated and are the ones it commits."""
    rep = Replica(CHAIN, KEYS[3], VALS, 1, CFG)
    h, b = block(b"B")
    feed(rep, PrePrepare(0, 1, h, b"other bytes", VALS[0], NOSIG))
    rep.on_event(BlockVerdict(h, False, "bad_hash: block hash does not match its header"))
    assert rep.view == 1 and rep.changing
    pp0 = make_preprepare(KEYS[0], CHAIN, 0, 1, h, b)
    cert = PreparedCert(pp0, tuple(make_prepare(k, CHAIN, 0, 1, h) for k in KEYS[1:3]))
    vcs = (make_view_change(KEYS[0], CHAIN, 1, 0, None), make_view_change(KEYS[1], CHAIN, 1, 0, cert),
           make_view_change(KEYS[2], CHAIN, 1, 0, cert))
    (again,) = of(feed(rep, make_new_view(KEYS[1], CHAIN, 1, 1, vcs, make_preprepare(KEYS[1], CHAIN, 1, 1, h, b))),
                  ValidateBlock)
    assert again.block == b
    rep.on_event(BlockVerdict(h, True))
    feed(rep, make_prepare(KEYS[2], CHAIN, 1, 1, h))
    (c,) = of(feed(rep, make_commit(KEYS[1], CHAIN, 1, 1, h), make_commit(KEYS[2], CHAIN, 1, 1, h)), CommitBlock)
    assert c.block == b


# -- item 6a: replayed messages are checked against the validator set again -----------------

def test_buffered_messages_of_a_removed_validator_are_not_replayed():
    """Commits for height 2 from KEYS[0] and KEYS[1] are buffered; block 1 then removes
    KEYS[0] from the set (KEYS[4] joins). Its buffered Commit must not count: with it,
    one more Commit would decide height 2 with a vote from a non-member."""
    rep = Replica(CHAIN, KEYS[3], VALS, 1, CFG)
    h, b = block(b"height-2")
    feed(rep, make_commit(KEYS[0], CHAIN, 0, 2, h), make_commit(KEYS[1], CHAIN, 0, 2, h))
    assert len(rep.future) == 2
    new = (VALS[1], VALS[2], VALS[3], KEYS[4].public_key)  # primary of (0, 2) is VALS[1]
    rep.on_event(Committed(1, sha256(b"height-1"), new))
    assert of(feed(rep, make_preprepare(KEYS[1], CHAIN, 0, 2, h, b)), ValidateBlock)
    out = rep.on_event(BlockVerdict(h, True))
    out += feed(rep, make_commit(KEYS[2], CHAIN, 0, 2, h))
    assert not of(out, CommitBlock)  # KEYS[1], KEYS[2] and our own: KEYS[0]'s is not counted...
    (c,) = of(feed(rep, make_commit(KEYS[4], CHAIN, 0, 2, h)), CommitBlock)  # ... a member's is
    assert VALS[0] not in {k for k, _ in c.certificate.signatures}


# -- item 7: junk Commits ------------------------------------------------------------------

def test_junk_commits_are_bounded_per_sender_and_the_quorum_still_decides():
    rep = Replica(CHAIN, KEYS[3], VALS, 1, CFG)
    for v in range(1, 2001):  # KEYS[1] commit-votes for junk in 2000 views
        rep.on_event(MessageReceived(Commit(v, 1, sha256(b"junk%d" % v), VALS[1], NOSIG)))
    kept = rep.commits.count()
    assert kept <= bookkeeping.MAX_COMMIT_KEYS
    h, b = block(b"real")
    feed(rep, make_preprepare(KEYS[0], CHAIN, 0, 1, h, b))
    rep.on_event(BlockVerdict(h, True))
    out = feed(rep, make_prepare(KEYS[2], CHAIN, 0, 1, h))  # prepared: we commit-vote
    assert [c.block_hash for c in sent(out, Commit)] == [h]
    (c,) = of(feed(rep, make_commit(KEYS[0], CHAIN, 0, 1, h), make_commit(KEYS[2], CHAIN, 0, 1, h)), CommitBlock)
    assert c.block_hash == h
    assert rep.commits.count() <= 4 * bookkeeping.MAX_COMMIT_KEYS


# -- item 8: evidence state for ViewChanges at huge views -----------------------------------

def test_view_changes_at_ever_higher_views_leave_bounded_equivocation_state():
    rep = Replica(CHAIN, KEYS[3], VALS, 1, CFG)
    for v in range(1, 301):
        rep.on_event(MessageReceived(ViewChange(10**9 + v, 0, None, VALS[1], NOSIG)))
    assert len([k for k in rep.seen if k[1] == VALS[1]]) <= bookkeeping.MAX_SEEN
    # a conflicting ViewChange at its latest position (same view and height, now with a
    # prepared certificate) is still caught
    h = sha256(b"p")
    cert = PreparedCert(PrePrepare(0, 1, h, b"p", VALS[0], NOSIG), tuple(Prepare(0, 1, h, v, NOSIG) for v in VALS[2:]))
    out = rep.on_event(MessageReceived(ViewChange(10**9 + 300, 0, cert, VALS[1], NOSIG)))
    (ev,) = of(out, Evidence)
    assert ev.sender == VALS[1] and ev.msg_a.prepared is None and ev.msg_b.prepared == cert


# -- item 9: the future-message buffer -------------------------------------------------------

def test_a_preprepare_from_a_non_primary_is_not_buffered():
    rep = Replica(CHAIN, KEYS[3], VALS, 1, CFG)
    feed(rep, PrePrepare(0, 2, sha256(b"x"), b"x" * 1000, VALS[2], NOSIG))  # VALS[0] leads (0, 2)
    assert len(rep.future) == 0
    feed(rep, PrePrepare(0, 2, sha256(b"x"), b"x" * 1000, VALS[0], NOSIG))
    assert len(rep.future) == 1


def test_one_sender_cannot_crowd_honest_future_messages_out_of_the_buffer():
    rep = Replica(CHAIN, KEYS[3], VALS, 1, CFG)
    big = b"\x00" * (1024 * 1024)
    for v in range(0, 4 * 40, 4):  # the primary of (v, 2) for v = 0 mod 4: 40 MiB of blocks
        rep.on_event(MessageReceived(PrePrepare(v, 2, sha256(b"%d" % v), big, VALS[0], NOSIG)))
    for i in range(5000):  # and thousands of small junk votes
        rep.on_event(MessageReceived(Prepare(i, 2, sha256(b"p%d" % i), VALS[0], NOSIG)))
    mine = [m for m in rep.future if m.sender == VALS[0]]
    assert len(mine) <= CFG.max_buffered
    assert sum(len(getattr(m, "block", b"")) for m in mine) <= CFG.max_buffered_bytes
    honest = make_prepare(KEYS[2], CHAIN, 0, 2, sha256(b"next"))
    feed(rep, honest)
    assert honest in rep.future  # still room for everyone else


# -- item 12: help for peers that are behind ---------------------------------------------------

def test_help_for_a_peer_behind_is_bounded_per_peer_and_height():
    h = sha256(b"b4")
    cert = Certificate.build(4, 0, h, {k.public_key: make_commit(k, CHAIN, 0, 4, h).signature for k in KEYS[:3]})
    rep = Replica(CHAIN, KEYS[3], VALS, 5, CFG, last_certificate=cert)
    out = []
    for v in range(200):  # a peer "at height 1" in ever higher views
        out += rep.on_event(MessageReceived(Prepare(v, 1, sha256(b"old"), VALS[1], NOSIG)))
    helps = [e for e in out if isinstance(e, Send)]
    assert 0 < len(helps) <= core.MAX_HELPS * len(cert.signatures)
    assert len(rep.helped) <= 2 * len(VALS)
