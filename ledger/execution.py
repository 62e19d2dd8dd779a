"""The state transition: `execute_block(state, block context, txs) -> BlockResult`.

Pure and deterministic: the only inputs are the committed state, the block's height and
timestamp, and the transactions. Nothing is written to the store here; the caller commits
`BlockResult.writes` in the same atomic batch as the block itself.

Two kinds of failure are kept apart:

* a transaction that may not be in a block at all (bad signature, wrong chain, nonce
  not the next one, expired, duplicate) raises `NotIncludable`; a proposer drops it, a
  replica validating someone else's block rejects the whole block;
* a transaction that is well-formed but fails its rules (overspend, wrong role …) is
  included, gets a receipt with a stable error code, and changes nothing but its
  sender's nonce.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ledger import accounts, governance
from ledger.context import BlockContext, TxContext
from ledger.encoding import encode
from ledger.errors import EncodingError, LedgerError, TxRejected
from ledger.merkle import merkle_root
from ledger.state import StateView
from ledger.statetree import StateTreeError, apply_writes, root_hash
from ledger.tx import SignedTx
from ledger.txtypes import TX_TYPES, begin_block_hooks


class NotIncludable(LedgerError):
    """This transaction cannot be part of this block; `code` says why."""

    code = "not_includable"


@dataclass(frozen=True, slots=True)
class Receipt:
    code: str        # "ok" or a stable error code
    message: str
    result: dict

    @property
    def ok(self) -> bool:
        return self.code == "ok"

    def to_wire(self) -> list:
        return [self.code, self.message, self.result]

    @classmethod
    def from_wire(cls, w) -> "Receipt":
        return cls(w[0], w[1], w[2])

    def encode(self) -> bytes:
        return encode(self.to_wire())


@dataclass(slots=True)
class BlockResult:
    txs: list[SignedTx]
    receipts: list[Receipt]
    writes: dict[bytes, bytes | None]
    state_root: bytes
    results_root: bytes
    validators: list[dict]           # the set deciding the next height
    excluded: list[tuple[SignedTx, str, str]] = field(default_factory=list)  # (tx, code, message)
    tree_puts: dict[bytes, bytes | None] = field(default_factory=dict)  # state tree nodes of this height


def check_includable(state: StateView, stx: SignedTx, ctx: BlockContext, verified: bool) -> None:
    tx = stx.tx
    if tx.chain_id != ctx.chain_id:
        raise NotIncludable(f"transaction is for chain {tx.chain_id!r}", "wrong_chain")
    if tx.expiry and ctx.height > tx.expiry:
        raise NotIncludable(f"transaction expired at height {tx.expiry}", "expired")
    expected = accounts.next_nonce(state, stx.tx.sender_address)
    if tx.nonce != expected:
        raise NotIncludable(f"nonce {tx.nonce} but the account's next nonce is {expected}", "bad_nonce")
    if not verified and not stx.verify_signature():
        raise NotIncludable("signature does not verify", "bad_signature")


def execute_tx(state: StateView, stx: SignedTx, ctx: BlockContext) -> Receipt:
    """Run one includable transaction; its nonce is consumed whatever the outcome."""
    tx = stx.tx
    sender = tx.sender_address
    state.put(accounts.nonce_key(sender), tx.nonce + 1)
    member = accounts.member(state, sender)
    kind = TX_TYPES.get(tx.type)
    if kind is None:
        return Receipt("unknown_type", f"unknown transaction type {tx.type!r}", {})
    if member is None:
        return Receipt("unknown_sender", f"{sender} is not a member of any organisation", {})
    if kind.roles and member["role"] not in kind.roles:
        return Receipt(
            "unauthorized",
            f"{tx.type} needs role {' or '.join(sorted(kind.roles))}; {sender} is {member['role']}",
            {},
        )
    tctx = TxContext(ctx.chain_id, ctx.height, ctx.time_ms, stx.hash, sender, tx.sender, member, ctx.params)
    child = state.child()
    try:
        result = kind.handler(child, tctx, tx.payload) or {}
    except TxRejected as exc:
        return Receipt(exc.code, exc.message, {})
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError, EncodingError) as exc:
        # a payload of the wrong shape (or an out-of-range number) that slipped past a
        # handler's checks: a receipt, never an exception that would stop block building
        return Receipt("bad_payload", f"malformed payload: {exc!r}", {})
    child.merge_into_parent()
    return Receipt("ok", "", result)


def execute_block(
    base,
    ctx: BlockContext,
    txs: list[SignedTx],
    prev_state_root: bytes,
    *,
    verified: frozenset[bytes] | set[bytes] = frozenset(),
    drop_invalid: bool = False,
) -> BlockResult:
    """Execute `txs` on top of `base` (a Store or StateView).

    With `drop_invalid` (a proposer building a block) non-includable transactions are
    left out and listed in `excluded`; otherwise (validating or replaying) the first one
    raises `NotIncludable`. `verified` holds hashes whose signatures were checked already.
    The state root is the state tree's root after the block's writes; the tree is read
    from the store under `base`, so `base` must hold no uncommitted writes of its own.
    """
    state = StateView(base)
    for hook in begin_block_hooks():
        hook(state, ctx)
    included: list[SignedTx] = []
    receipts: list[Receipt] = []
    excluded: list[tuple[SignedTx, str, str]] = []
    seen: set[bytes] = set()
    for stx in txs:
        try:
            if stx.hash in seen:
                raise NotIncludable("transaction appears twice in the block", "duplicate")
            check_includable(state, stx, ctx, stx.hash in verified)
        except NotIncludable as exc:
            if not drop_invalid:
                raise NotIncludable(f"tx {stx.hash.hex()}: {exc.message}", exc.code) from None
            excluded.append((stx, exc.code, exc.message))
            continue
        seen.add(stx.hash)
        included.append(stx)
        receipts.append(execute_tx(state, stx, ctx))
    governance.activate_validator_changes(state, ctx.height + 1)
    store = state.store()
    if root_hash(store, ctx.height - 1) != prev_state_root:
        raise StateTreeError(f"the store's state tree at height {ctx.height - 1} does not have root "
                             f"{prev_state_root.hex()}: the store is not at the block's parent")
    tree = apply_writes(store, ctx.height, state.writes)
    return BlockResult(
        txs=included,
        receipts=receipts,
        writes=state.writes,
        state_root=tree.root,
        results_root=merkle_root([r.encode() for r in receipts]),
        validators=accounts.validators(state),
        excluded=excluded,
        tree_puts=tree.puts,
    )
