"""The closed set of transaction types: name -> (roles allowed to send it, handler).

A handler is `handler(state: StateView, ctx: TxContext, payload: dict) -> dict` and
raises `TxRejected(message, code)` to fail; its writes are discarded on failure.
An empty role set means any member of a registered organisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ledger import accounts, governance
from ledger import market


@dataclass(frozen=True, slots=True)
class TxType:
    name: str
    roles: frozenset[str]
    handler: Callable


def _types() -> dict[str, TxType]:
    table = {
        "transfer": TxType("transfer", frozenset({"admin", "operator"}), accounts.transfer),
        "propose": TxType("propose", frozenset({"admin"}), governance.propose),
        "vote": TxType("vote", frozenset({"admin"}), governance.vote),
    }
    for name, (roles, handler) in market.TX_TYPES.items():
        table[name] = TxType(name, frozenset(roles), handler)
    return table


TX_TYPES: dict[str, TxType] = _types()


def begin_block_hooks() -> tuple[Callable, ...]:
    """Deterministic time-driven transitions run at the start of every block."""
    return tuple(market.BEGIN_BLOCK_HOOKS)
