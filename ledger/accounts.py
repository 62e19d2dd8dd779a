"""Accounts, organisations, members, validators and chain parameters in state.

State keys (all under the store's ``s/`` prefix):

    bal/<address>    uint   settlement credits (micro-credits)
    nonce/<address>  uint   next nonce expected from the account
    supply           uint   credits in existence (genesis + mint); balances + escrow = supply
    escrow_total     uint   credits currently held in escrow by the market
    org/<id>         map    {id, name}
    m/<address>      map    {org, role, key}: a member of an organisation
    validators       list   [{key, org, p2p, api}] deciding the next height, in order
    validators_next  map    {height, validators}: a change approved, active from height
    params           map    chain parameters (consensus, governance, market)
"""

from __future__ import annotations

from ledger.crypto import address_problem
from ledger.errors import TxRejected
from ledger.state import StateView

ROLES = ("admin", "operator", "auditor")
MAX_AMOUNT = 2**62


def bal_key(address: str) -> bytes:
    return b"bal/" + address.encode()


def nonce_key(address: str) -> bytes:
    return b"nonce/" + address.encode()


def member_key(address: str) -> bytes:
    return b"m/" + address.encode()


def org_key(org_id: str) -> bytes:
    return b"org/" + org_id.encode()


def balance(state: StateView, address: str) -> int:
    return state.get(bal_key(address), 0)


def credit(state: StateView, address: str, amount: int) -> None:
    if amount < 0:
        raise TxRejected("amount must not be negative", "bad_amount")
    state.put(bal_key(address), balance(state, address) + amount)


def debit(state: StateView, address: str, amount: int) -> None:
    if amount < 0:
        raise TxRejected("amount must not be negative", "bad_amount")
    have = balance(state, address)
    if have < amount:
        raise TxRejected(f"balance {have} is less than {amount}", "insufficient_funds")
    if have == amount:
        state.delete(bal_key(address))
    else:
        state.put(bal_key(address), have - amount)


def next_nonce(state: StateView, address: str) -> int:
    return state.get(nonce_key(address), 0)


def supply(state: StateView) -> int:
    return state.get(b"supply", 0)


def escrow_total(state: StateView) -> int:
    return state.get(b"escrow_total", 0)


def move_to_escrow(state: StateView, address: str, amount: int) -> None:
    debit(state, address, amount)
    state.put(b"escrow_total", escrow_total(state) + amount)


def release_from_escrow(state: StateView, address: str, amount: int) -> None:
    held = escrow_total(state)
    if amount < 0 or amount > held:
        raise TxRejected(f"escrow holds {held}, cannot release {amount}", "escrow_underflow")
    state.put(b"escrow_total", held - amount)
    credit(state, address, amount)


def member(state: StateView, address: str) -> dict | None:
    return state.get(member_key(address))


def org(state: StateView, org_id: str) -> dict | None:
    return state.get(org_key(org_id))


def orgs(state: StateView) -> list[dict]:
    return [value for _, value in state.items(b"org/")]


def members_of(state: StateView, org_id: str, role: str | None = None) -> list[tuple[str, dict]]:
    out = []
    for key, value in state.items(b"m/"):
        if value["org"] == org_id and (role is None or value["role"] == role):
            out.append((key[2:].decode(), value))
    return out


def validators(state: StateView) -> list[dict]:
    return state.get(b"validators", [])


PARAMS_KEY = b"params"


def params(state: StateView) -> dict:
    return state.get(PARAMS_KEY, {})


def require_amount(value, what: str = "amount") -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_AMOUNT:
        raise TxRejected(f"{what} must be a positive integer (minor units)", "bad_amount")
    return value


def require_address(value, what: str = "address") -> str:
    problem = address_problem(value)
    if problem is not None:  # an old-form address is refused here too, under bad_address
        raise TxRejected(f"{what} is not an address: {problem[1]}", "bad_address")
    return value


def transfer(state: StateView, ctx, payload: dict) -> dict:
    """`transfer {to, amount}`: move credits from the sender to any address."""
    to = require_address(payload.get("to"), "to")
    amount = require_amount(payload.get("amount"))
    if set(payload) - {"to", "amount", "memo"}:
        raise TxRejected(f"unknown fields: {sorted(set(payload) - {'to', 'amount', 'memo'})}", "bad_payload")
    memo = payload.get("memo", "")
    if not isinstance(memo, str) or len(memo) > 256:
        raise TxRejected("memo must be text of at most 256 characters", "bad_payload")
    debit(state, ctx.sender, amount)
    credit(state, to, amount)
    return {"to": to, "amount": amount}
