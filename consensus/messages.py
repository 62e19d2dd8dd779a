"""Consensus messages, their exact wire arrays, signing and signature checks.

Every message is a msgpack array whose first element is a small integer tag. What a
message signs is `ledger.encoding.signing_bytes(DOMAIN_*, chain_id, payload)`, so a
signature is bound to its kind, the chain, the view and the height. Commit signs
`ledger.block.commit_signing_bytes`, so a quorum (`ledger.block.quorum`) of Commit signatures is a `Certificate`.

Wire forms (`encode_message` / `decode_message`):

    PrePrepare  [1, view, height, block_hash, block, sender, signature]
    Prepare     [2, view, height, block_hash, sender, signature]
    Commit      [3, view, height, block_hash, sender, signature]
    ViewChange  [4, new_view, last_committed_height, prepared | nil, sender, signature]
    NewView     [5, view, height, [view_change, ...], preprepare | nil, sender, signature]
    prepared  = [preprepare, [prepare, ...]]      (nested messages in their wire form)

Inside a NewView every ViewChange's prepared pre-prepare travels with its block bytes
left out (an empty bin): signatures cover only (view, height, block_hash), and the one
block a NewView needs, the re-proposal, is in its own pre-prepare. So a NewView is one
block plus signatures, never one block per ViewChange (a 3 MiB block must fit a 4 MiB
p2p frame).

Signed payloads:

    PrePrepare  DOMAIN_PREPREPARE  [view, height, block_hash]
    Prepare     DOMAIN_PREPARE     [view, height, block_hash]
    Commit      DOMAIN_COMMIT      [view, height, block_hash]
    ViewChange  DOMAIN_VIEW_CHANGE [new_view, last_committed_height, nil | [view, height, block_hash]]
    NewView     DOMAIN_NEW_VIEW    [view, height, [sha256(encode(vc wire, block left out)), ...],
                                    nil | [pp.view, pp.height, pp.block_hash]]

`check_message` is what the node runs on every received message before the core sees
it: cheap shape checks against the validator set first (so a message can never cost more
than about q*(q+1)+2 signature checks), then that every block carried hashes to the
digest it is signed under, then the signatures. A refusal is the sender's fault.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Union

from ledger.block import HASH_SIZE, commit_signing_bytes, quorum
from ledger.crypto import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, Signer, verify
from ledger.encoding import (
    DOMAIN_NEW_VIEW,
    DOMAIN_PREPARE,
    DOMAIN_PREPREPARE,
    DOMAIN_VIEW_CHANGE,
    decode,
    encode,
    expect,
    expect_array,
    expect_bytes,
    expect_uint,
    sha256,
    signing_bytes,
)
from ledger.errors import EncodingError, LedgerError

TAG_PREPREPARE = 1
TAG_PREPARE = 2
TAG_COMMIT = 3
TAG_VIEW_CHANGE = 4
TAG_NEW_VIEW = 5

MAX_MESSAGE_BYTES = 80 * 1024 * 1024  # decode limit; the p2p frame limit (4 MiB) is the real bound
MAX_PROOFS = 1024  # nested prepares / view changes in one message (decode limit; see check_message)


class ConsensusError(Exception):
    """Root of the consensus package's errors."""


class MessageRefused(ConsensusError):
    """A received message is malformed for this validator set, carries block bytes that
    do not hash to the digest signed, or has a bad signature: the sender's fault.
    `code` is stable: "shape", "block_hash", "signature"."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class PrePrepare:
    view: int
    height: int
    block_hash: bytes
    block: bytes
    sender: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class Prepare:
    view: int
    height: int
    block_hash: bytes
    sender: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class Commit:
    view: int
    height: int
    block_hash: bytes
    sender: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class PreparedCert:
    """A pre-prepare plus 2f matching prepares from other validators: proof that a block
    was prepared at (view, height). Carries the block so a new primary can re-propose it."""

    preprepare: PrePrepare
    prepares: tuple[Prepare, ...]

    @property
    def view(self) -> int:
        return self.preprepare.view

    @property
    def height(self) -> int:
        return self.preprepare.height

    @property
    def block_hash(self) -> bytes:
        return self.preprepare.block_hash


@dataclass(frozen=True, slots=True)
class ViewChange:
    new_view: int
    last_committed_height: int
    prepared: PreparedCert | None
    sender: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class NewView:
    view: int
    height: int  # the height the new view starts deciding at
    view_changes: tuple[ViewChange, ...]
    preprepare: PrePrepare | None  # re-proposal of the highest prepared block, if any
    sender: bytes
    signature: bytes


Message = Union[PrePrepare, Prepare, Commit, ViewChange, NewView]


# -- wire forms ---------------------------------------------------------------------

def prepared_to_wire(p: PreparedCert) -> list:
    return [to_wire(p.preprepare), [to_wire(x) for x in p.prepares]]


def to_wire(msg: Message) -> list:
    if isinstance(msg, PrePrepare):
        return [TAG_PREPREPARE, msg.view, msg.height, msg.block_hash, msg.block, msg.sender, msg.signature]
    if isinstance(msg, Prepare):
        return [TAG_PREPARE, msg.view, msg.height, msg.block_hash, msg.sender, msg.signature]
    if isinstance(msg, Commit):
        return [TAG_COMMIT, msg.view, msg.height, msg.block_hash, msg.sender, msg.signature]
    if isinstance(msg, ViewChange):
        prepared = None if msg.prepared is None else prepared_to_wire(msg.prepared)
        return [TAG_VIEW_CHANGE, msg.new_view, msg.last_committed_height, prepared, msg.sender, msg.signature]
    if isinstance(msg, NewView):
        pp = None if msg.preprepare is None else to_wire(msg.preprepare)
        return [TAG_NEW_VIEW, msg.view, msg.height, [to_wire(v) for v in msg.view_changes], pp,
                msg.sender, msg.signature]
    raise EncodingError(f"not a consensus message: {type(msg).__name__}")


def encode_message(msg: Message) -> bytes:
    return encode(to_wire(msg))


def _list(v, what: str) -> list:
    expect(v, list, what)
    if len(v) > MAX_PROOFS:
        raise EncodingError(f"{what}: more than {MAX_PROOFS} entries")
    return v


def _tail(w: list, what: str) -> tuple[bytes, bytes]:
    return expect_bytes(w[-2], PUBLIC_KEY_SIZE, f"{what}.sender"), expect_bytes(w[-1], SIGNATURE_SIZE, f"{what}.signature")


def _expect_tag(w, tag: int, length: int, what: str) -> list:
    expect(w, list, what)
    if not w or w[0] != tag or isinstance(w[0], bool):
        raise EncodingError(f"{what}: expected a message with tag {tag}")
    return expect_array(w, length, what)


def _preprepare(w) -> PrePrepare:
    _expect_tag(w, TAG_PREPREPARE, 7, "preprepare")
    sender, sig = _tail(w, "preprepare")
    return PrePrepare(expect_uint(w[1], "preprepare.view"), expect_uint(w[2], "preprepare.height"),
                      expect_bytes(w[3], HASH_SIZE, "preprepare.block_hash"), expect(w[4], bytes, "preprepare.block"),
                      sender, sig)


def _vote(w, tag: int, cls, what: str):
    _expect_tag(w, tag, 6, what)
    sender, sig = _tail(w, what)
    return cls(expect_uint(w[1], f"{what}.view"), expect_uint(w[2], f"{what}.height"),
               expect_bytes(w[3], HASH_SIZE, f"{what}.block_hash"), sender, sig)


def prepared_from_wire(w) -> PreparedCert:
    expect_array(w, 2, "prepared")
    return PreparedCert(_preprepare(w[0]),
                        tuple(_vote(p, TAG_PREPARE, Prepare, "prepare") for p in _list(w[1], "prepared.prepares")))


def _view_change(w, nested: bool = False) -> ViewChange:
    _expect_tag(w, TAG_VIEW_CHANGE, 6, "viewchange")
    sender, sig = _tail(w, "viewchange")
    prepared = None if w[3] is None else prepared_from_wire(w[3])
    if nested and prepared is not None and prepared.preprepare.block:
        raise EncodingError("newview.view_changes: a prepared block must be left out (empty bin)")
    return ViewChange(expect_uint(w[1], "viewchange.new_view"), expect_uint(w[2], "viewchange.last_committed_height"),
                      prepared, sender, sig)


def _new_view(w) -> NewView:
    _expect_tag(w, TAG_NEW_VIEW, 7, "newview")
    sender, sig = _tail(w, "newview")
    vcs = tuple(_view_change(v, nested=True) for v in _list(w[3], "newview.view_changes"))
    pp = None if w[4] is None else _preprepare(w[4])
    return NewView(expect_uint(w[1], "newview.view"), expect_uint(w[2], "newview.height"), vcs, pp, sender, sig)


def from_wire(w) -> Message:
    expect(w, list, "message")
    if not w:
        raise EncodingError("message: empty array")
    tag = w[0]
    if tag == TAG_PREPREPARE:
        return _preprepare(w)
    if tag == TAG_PREPARE:
        return _vote(w, TAG_PREPARE, Prepare, "prepare")
    if tag == TAG_COMMIT:
        return _vote(w, TAG_COMMIT, Commit, "commit")
    if tag == TAG_VIEW_CHANGE:
        return _view_change(w)
    if tag == TAG_NEW_VIEW:
        return _new_view(w)
    raise EncodingError(f"message: unknown tag {tag!r}")


def decode_message(data: bytes) -> Message:
    """Strict: raises EncodingError on anything but the canonical encoding of a message."""
    return from_wire(decode(data, max_size=MAX_MESSAGE_BYTES))


# -- signing --------------------------------------------------------------------------

def _prepared_ref(p: PreparedCert | None):
    return None if p is None else [p.view, p.height, p.block_hash]


def without_block(vc: ViewChange) -> ViewChange:
    """`vc` as it travels inside a NewView: its prepared block's bytes left out."""
    p = vc.prepared
    if p is None or not p.preprepare.block:
        return vc
    return replace(vc, prepared=PreparedCert(replace(p.preprepare, block=b""), p.prepares))


def view_change_digest(vc: ViewChange) -> bytes:
    return sha256(encode_message(without_block(vc)))


def signed_bytes(msg: Message, chain_id: str) -> bytes:
    """The exact bytes `msg.signature` covers."""
    if isinstance(msg, PrePrepare):
        return signing_bytes(DOMAIN_PREPREPARE, chain_id, [msg.view, msg.height, msg.block_hash])
    if isinstance(msg, Prepare):
        return signing_bytes(DOMAIN_PREPARE, chain_id, [msg.view, msg.height, msg.block_hash])
    if isinstance(msg, Commit):
        return commit_signing_bytes(chain_id, msg.view, msg.height, msg.block_hash)
    if isinstance(msg, ViewChange):
        return signing_bytes(DOMAIN_VIEW_CHANGE, chain_id,
                             [msg.new_view, msg.last_committed_height, _prepared_ref(msg.prepared)])
    if isinstance(msg, NewView):
        pp = msg.preprepare
        ref = None if pp is None else [pp.view, pp.height, pp.block_hash]
        return signing_bytes(DOMAIN_NEW_VIEW, chain_id,
                             [msg.view, msg.height, [view_change_digest(v) for v in msg.view_changes], ref])
    raise EncodingError(f"not a consensus message: {type(msg).__name__}")


_NO_SIG = b"\x00" * SIGNATURE_SIZE


def _signed(msg, signer: Signer, chain_id: str):
    return replace(msg, signature=signer.sign(signed_bytes(msg, chain_id)))


def make_preprepare(signer: Signer, chain_id: str, view: int, height: int, block_hash: bytes,
                    block: bytes) -> PrePrepare:
    return _signed(PrePrepare(view, height, block_hash, block, signer.public_key, _NO_SIG), signer, chain_id)


def make_prepare(signer: Signer, chain_id: str, view: int, height: int, block_hash: bytes) -> Prepare:
    return _signed(Prepare(view, height, block_hash, signer.public_key, _NO_SIG), signer, chain_id)


def make_commit(signer: Signer, chain_id: str, view: int, height: int, block_hash: bytes) -> Commit:
    return _signed(Commit(view, height, block_hash, signer.public_key, _NO_SIG), signer, chain_id)


def make_view_change(signer: Signer, chain_id: str, new_view: int, last_committed_height: int,
                     prepared: PreparedCert | None) -> ViewChange:
    return _signed(ViewChange(new_view, last_committed_height, prepared, signer.public_key, _NO_SIG),
                   signer, chain_id)


def make_new_view(signer: Signer, chain_id: str, view: int, height: int,
                  view_changes: tuple[ViewChange, ...], preprepare: PrePrepare | None) -> NewView:
    vcs = tuple(without_block(v) for v in view_changes)
    return _signed(NewView(view, height, vcs, preprepare, signer.public_key, _NO_SIG), signer, chain_id)


BlockId = Callable[[bytes], bytes]  # block bytes -> block hash; raises LedgerError/ValueError on garbage


def check_message(msg: Message, chain_id: str, validators, block_id: BlockId) -> None:
    """Raise `MessageRefused` unless `msg` may go to the core: every signer (nested ones
    too) is in `validators`, proofs have the one shape an honest replica builds (a
    prepared certificate is a pre-prepare plus exactly q-1 Prepares from distinct other
    validators; a NewView carries exactly q ViewChanges from distinct validators, all for
    its view), every block carried hashes (by `block_id`) to its signed digest, and every
    signature verifies. Shape and hashes are checked before any signature, so the work a
    message can cause is bounded by the validator set, not by its size. Pure."""
    keys = tuple(validators)
    allowed = set(keys)
    q = quorum(len(keys))
    sigs: list = []
    _shape(msg, allowed, q, sigs)
    for m in sigs:
        if isinstance(m, PrePrepare) and not _nested(msg, m):
            _bound(m, block_id)
    for m in sigs:
        if not verify(m.sender, signed_bytes(m, chain_id), m.signature):
            raise MessageRefused(f"{type(m).__name__} from {m.sender.hex()[:16]}: bad signature", "signature")


def _nested(outer: Message, pp: PrePrepare) -> bool:
    """True for a prepared pre-prepare inside a NewView (its block is left out)."""
    return isinstance(outer, NewView) and pp is not outer.preprepare


def _bound(pp: PrePrepare, block_id: BlockId) -> None:
    try:
        digest = block_id(pp.block)
    except (LedgerError, ValueError, TypeError) as exc:
        raise MessageRefused(f"block of pre-prepare ({pp.view}, {pp.height}) does not decode: {exc}",
                             "block_hash") from None
    if digest != pp.block_hash:
        raise MessageRefused(f"block of pre-prepare ({pp.view}, {pp.height}) does not hash to its digest",
                             "block_hash")


def _refuse(what: str) -> None:
    raise MessageRefused(what, "shape")


def _member(m, allowed: set[bytes], sigs: list) -> None:
    if m.sender not in allowed:
        _refuse(f"{type(m).__name__} signed by {m.sender.hex()[:16]}, not a validator")
    sigs.append(m)


def _shape_prepared(p: PreparedCert, allowed: set[bytes], q: int, sigs: list) -> None:
    pp = p.preprepare
    _member(pp, allowed, sigs)
    if len(p.prepares) != q - 1:
        _refuse(f"prepared certificate with {len(p.prepares)} prepares, {q - 1} expected")
    senders = {pp.sender}
    for x in p.prepares:
        if (x.view, x.height, x.block_hash) != (pp.view, pp.height, pp.block_hash) or x.sender in senders:
            _refuse("prepared certificate: a prepare that does not match, or a signer twice")
        senders.add(x.sender)
        _member(x, allowed, sigs)


def _shape(msg: Message, allowed: set[bytes], q: int, sigs: list) -> None:
    if not isinstance(msg, (PrePrepare, Prepare, Commit, ViewChange, NewView)):
        _refuse(f"not a consensus message: {type(msg).__name__}")
    _member(msg, allowed, sigs)
    if isinstance(msg, ViewChange) and msg.prepared is not None:
        _shape_prepared(msg.prepared, allowed, q, sigs)
    elif isinstance(msg, NewView):
        if len(msg.view_changes) != q:
            _refuse(f"NewView with {len(msg.view_changes)} view changes, {q} expected")
        senders = set()
        for vc in msg.view_changes:
            if vc.new_view != msg.view or vc.sender in senders:
                _refuse("NewView: a view change for another view, or a signer twice")
            senders.add(vc.sender)
            _member(vc, allowed, sigs)
            if vc.prepared is not None:
                _shape_prepared(vc.prepared, allowed, q, sigs)
        if msg.preprepare is not None:
            _member(msg.preprepare, allowed, sigs)


def verify_message(msg: Message, chain_id: str, validators, block_id: BlockId) -> bool:
    """`check_message` as a yes/no answer."""
    try:
        check_message(msg, chain_id, validators, block_id)
        return True
    except MessageRefused:
        return False
