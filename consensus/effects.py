"""Outputs of the consensus core, to be carried out by the node *in list order*.

`PersistSigned` must be durable (fsync) before any later `Send`/`Broadcast` in the same
list leaves the node: that is what keeps a restarted replica from signing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ledger.block import Certificate

from consensus.messages import Message
from consensus.state import SignedState


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send to every other validator."""

    msg: Message


@dataclass(frozen=True, slots=True)
class Send:
    to: bytes  # validator public key
    msg: Message


@dataclass(frozen=True, slots=True)
class PersistSigned:
    record: SignedState


@dataclass(frozen=True, slots=True)
class ScheduleTimeout:
    kind: str
    view: int
    height: int
    after_ms: int
    gen: int = 0  # generation of a re-armable timer; fired back in TimeoutFired.gen


@dataclass(frozen=True, slots=True)
class ValidateBlock:
    view: int
    height: int
    block_hash: bytes
    block: bytes


@dataclass(frozen=True, slots=True)
class RequestProposal:
    view: int
    height: int


@dataclass(frozen=True, slots=True)
class CommitBlock:
    """Execute and store this block with its certificate, then answer `Committed` (or
    `CommitFailed` if the chain refuses it)."""

    height: int
    block_hash: bytes
    block: bytes
    certificate: Certificate


@dataclass(frozen=True, slots=True)
class FetchBlocks:
    """We are behind: fetch blocks from `from_height` on, with certificates, and feed
    them back as `FetchedBlock` events (or apply them after verifying and report `Committed`)."""

    from_height: int
    peer: bytes | None


@dataclass(frozen=True, slots=True)
class Evidence:
    """Two conflicting messages signed by one validator; kind is "equivocation"."""

    kind: str
    sender: bytes
    msg_a: Message
    msg_b: Message


@dataclass(frozen=True, slots=True)
class ResendTx:
    """Gossip the pending transaction `tx_hash` (the `PendingTxs.oldest` id) to every
    validator again: before a replica blames the primary for leaving it out, it makes
    sure the primary has it (the first gossip may have been lost)."""

    tx_hash: bytes


Effect = Union[Broadcast, Send, PersistSigned, ScheduleTimeout, ValidateBlock, RequestProposal,
               CommitBlock, FetchBlocks, Evidence, ResendTx]
