"""Structural checks of the proofs carried by ViewChange and NewView messages, and the
rule that picks what a new view must re-propose. Signatures are checked by
`verify_message` before a message reaches the core; these functions check the rest."""

from __future__ import annotations

from ledger.block import quorum

from consensus.messages import NewView, PreparedCert, ViewChange
from consensus.state import primary_index


def prepared_ok(p: PreparedCert, validators: tuple[bytes, ...], rotation_blocks: int) -> bool:
    """A pre-prepare from the right primary plus q-1 distinct matching prepares from others
    (q = `ledger.block.quorum(n)`, 2f+1 when n = 3f+1)."""
    n = len(validators)
    pp = p.preprepare
    if pp.sender != validators[primary_index(pp.view, pp.height, n, rotation_blocks)]:
        return False
    senders = set()
    for x in p.prepares:
        if (x.view, x.height, x.block_hash) != (pp.view, pp.height, pp.block_hash):
            return False
        if x.sender == pp.sender or x.sender not in validators or x.sender in senders:
            return False
        senders.add(x.sender)
    return len(senders) >= quorum(n) - 1


def view_change_ok(vc: ViewChange, validators: tuple[bytes, ...], rotation_blocks: int) -> bool:
    if vc.sender not in validators or vc.new_view == 0:
        return False
    p = vc.prepared
    if p is None:
        return True
    return (p.view < vc.new_view and p.height == vc.last_committed_height + 1
            and prepared_ok(p, validators, rotation_blocks))


def start_height(vcs) -> int:
    """The lowest height a new view may decide at: nothing above the quorum's highest
    committed height + 1 can have been committed in an earlier view."""
    return max(vc.last_committed_height for vc in vcs) + 1


def select_prepared(vcs, height: int) -> PreparedCert | None:
    """The highest-view prepared certificate for `height` among the view changes."""
    best = None
    for vc in vcs:
        p = vc.prepared
        if p is not None and p.height == height:
            if best is None or (p.view, p.block_hash) > (best.view, best.block_hash):
                best = p
    return best


def new_view_ok(nv: NewView, validators: tuple[bytes, ...], rotation_blocks: int, q: int,
                ignore_prepared: bool = False, unscoped: bool = False) -> tuple[bool, bytes | None]:
    """(acceptable, hash the view must decide at nv.height or None if free)."""
    n = len(validators)
    if nv.sender != validators[primary_index(nv.view, nv.height, n, rotation_blocks)]:
        return False, None
    senders = set()
    for vc in nv.view_changes:
        if vc.new_view != nv.view or vc.sender in senders or not view_change_ok(vc, validators, rotation_blocks):
            return False, None
        senders.add(vc.sender)
    if len(senders) < q or nv.height < start_height(nv.view_changes):
        return False, None
    if not unscoped and any(vc.last_committed_height != nv.height - 1 for vc in nv.view_changes):
        return False, None  # rule R1: every ViewChange must be scoped to the NewView's height
    chosen = None if ignore_prepared else select_prepared(nv.view_changes, nv.height)
    pp = nv.preprepare
    if chosen is None:
        return pp is None, None
    ok = (pp is not None and pp.view == nv.view and pp.height == nv.height
          and pp.block_hash == chosen.block_hash and pp.sender == nv.sender)
    return ok, chosen.block_hash
