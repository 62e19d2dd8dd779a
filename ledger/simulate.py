"""Dry runs: what transactions would do in the next block, without committing anything.

`simulate` executes on a `StateView` over the committed store, at the next height and a
given block time, exactly as `execute_block` would (begin-block hooks first, then each
transaction in its own child view), and then drops the view: the store is only read.

Nonces follow the mempool: a sender's transactions already pending (its ready run, in
nonce order, given by `pending(sender_key)`) are executed first, so a transaction signed
with the pending nonce is judged on the state it would really meet. Transactions of other
senders still pending are not: their order in the next block is not known.

Each transaction gets a `Simulated` result: ``stage`` "admission" when it could never be
in a block (nonce, expiry, sender unknown, duplicate), "execution" with the receipt the
block would give it otherwise. For a governance proposal left open, `preview` says whether
its actions would apply if it were approved now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ledger import accounts, governance
from ledger.context import BlockContext
from ledger.errors import LedgerError
from ledger.execution import NotIncludable, check_includable, execute_tx
from ledger.state import StateView
from ledger.tx import SignedTx
from ledger.txtypes import begin_block_hooks

DEFAULT_MAX_STEPS = 2_000  # transactions executed per dry run, pending ones included


class SimulationTooLarge(LedgerError):
    """The dry run would execute more transactions than allowed (pending ones count)."""

    code = "simulate_too_large"


@dataclass(frozen=True, slots=True)
class Simulated:
    hash: bytes
    code: str                  # "ok" or a stable error code
    message: str
    result: dict
    stage: str                 # "admission" | "execution"
    preview: dict | None = None

    @property
    def ok(self) -> bool:
        return self.code == "ok" and self.preview is None and self.result.get("status") != "failed"


def simulate(
    base,
    ctx: BlockContext,
    txs: list[SignedTx],
    pending: Callable[[bytes], list[SignedTx]],
    *,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> list[Simulated]:
    """Execute `txs` (signatures already checked) in order on top of `base` at `ctx`."""
    state = StateView(base)
    for hook in begin_block_hooks():
        hook(state, ctx)
    runs: dict[bytes, list[SignedTx]] = {}
    applied: dict[bytes, int] = {}  # sender -> how much of its pending run ran already
    seen: set[bytes] = set()
    steps = 0
    out: list[Simulated] = []

    def step() -> None:
        nonlocal steps
        steps += 1
        if steps > max_steps:
            raise SimulationTooLarge(
                f"the dry run would execute more than {max_steps} transactions (pending ones of the same "
                "senders included); simulate fewer at a time", "simulate_too_large")

    for stx in txs:
        tx = stx.tx
        if stx.hash in seen:
            out.append(Simulated(stx.hash, "duplicate", "transaction appears twice in this dry run", {}, "admission"))
            continue
        seen.add(stx.hash)
        address = tx.sender_address
        if accounts.member(state, address) is None:
            out.append(Simulated(stx.hash, "unknown_sender", f"{address} is not a member of any organisation", {},
                                 "admission"))
            continue
        run = runs.setdefault(tx.sender, sorted(pending(tx.sender), key=lambda t: t.tx.nonce))
        i = applied.get(tx.sender, 0)
        while i < len(run) and run[i].tx.nonce < tx.nonce:
            step()
            try:  # a pending transaction a proposer would drop is dropped here too
                check_includable(state, run[i], ctx, True)
                execute_tx(state, run[i], ctx)
            except NotIncludable:
                pass
            i += 1
        if i < len(run) and run[i].tx.nonce == tx.nonce:
            if run[i].hash != stx.hash:
                applied[tx.sender] = i
                out.append(Simulated(stx.hash, "nonce_conflict",
                                     f"nonce {tx.nonce} is taken by pending transaction {run[i].hash.hex()}", {},
                                     "admission"))
                continue
            i += 1  # this very transaction is pending: running it below stands for its turn
        applied[tx.sender] = i
        step()
        try:
            check_includable(state, stx, ctx, True)
        except NotIncludable as exc:
            out.append(_not_includable(state, stx, exc, len(run)))
            continue
        receipt = execute_tx(state, stx, ctx)
        out.append(Simulated(stx.hash, receipt.code, receipt.message, receipt.result, "execution",
                             _proposal_preview(state, ctx, stx, receipt.result) if receipt.ok else None))
    return out


def _not_includable(state: StateView, stx: SignedTx, exc: NotIncludable, pending_count: int) -> Simulated:
    if exc.code != "bad_nonce":
        return Simulated(stx.hash, exc.code, exc.message, {}, "admission")
    expected = accounts.next_nonce(state, stx.tx.sender_address)
    if stx.tx.nonce < expected:
        return Simulated(stx.hash, "nonce_used",
                         f"nonce {stx.tx.nonce} is already used; the next nonce is {expected}", {}, "admission")
    after = f" after its {pending_count} pending transaction(s)" if pending_count else ""
    return Simulated(stx.hash, "nonce_gap",
                     f"nonce {stx.tx.nonce}, but the account's next nonce{after} is {expected}: the node would "
                     "hold it until the nonces in between arrive", {}, "admission")


def _proposal_preview(state: StateView, ctx: BlockContext, stx: SignedTx, result: dict) -> dict | None:
    """For a propose or vote that leaves its proposal open: would its actions apply now?"""
    if stx.tx.type not in ("propose", "vote") or result.get("status") != "open":
        return None
    proposal = governance.get_proposal(state, result["proposal"])
    return None if proposal is None else governance.preview(state, ctx.height, proposal)
