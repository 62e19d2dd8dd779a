"""What a transaction handler may know besides state: block height, block time, sender."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TxContext:
    chain_id: str
    height: int
    time_ms: int          # the block's timestamp: the only clock inside the state machine
    tx_hash: bytes
    sender: str           # the sender's address
    sender_key: bytes     # the sender's public key
    member: dict | None   # {org, role, key} when the sender belongs to an organisation
    params: dict


@dataclass(frozen=True, slots=True)
class BlockContext:
    chain_id: str
    height: int
    time_ms: int
    params: dict
