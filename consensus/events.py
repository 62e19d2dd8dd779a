"""Inputs to the consensus core. The node turns network traffic, validation results,
timers and storage progress into these; the core never asks for anything directly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ledger.block import Certificate

from consensus.messages import Message
from consensus.state import ConsensusConfig


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A message whose signatures the node has checked with `verify_message`."""

    msg: Message


@dataclass(frozen=True, slots=True)
class BlockVerdict:
    """Answer to `ValidateBlock`: is the block valid on top of the current chain?"""

    block_hash: bytes
    valid: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ProposalReady:
    """Answer to `RequestProposal`: the node built a block (it hashed it)."""

    view: int
    height: int
    block_hash: bytes
    block: bytes


@dataclass(frozen=True, slots=True)
class TimeoutFired:
    """A timer scheduled by `ScheduleTimeout` expired; kinds are "progress", "viewchange", "fetch",
    "censor", "slow", "commit"."""

    kind: str
    view: int
    height: int
    gen: int = 0  # ScheduleTimeout.gen: a "progress" timer of an older generation is stale


@dataclass(frozen=True, slots=True)
class Committed:
    """The node executed and stored block `height`; `validators` is the set for height+1.
    `certificate` (optional) lets the replica hand the commit to peers that fall behind.
    `config` (optional) is the configuration for height+1 when the committed state changed
    it (governance `set_param` of view_timeout_ms, rotation_blocks, block_interval_ms):
    derived from the state after block `height`, so every replica takes it at the same
    height; None keeps the current one."""

    height: int
    block_hash: bytes
    validators: tuple[bytes, ...]
    certificate: Certificate | None = None
    config: ConsensusConfig | None = None


@dataclass(frozen=True, slots=True)
class FetchedBlock:
    """A block and its certificate obtained by catch-up; the core verifies the certificate
    before asking the node to commit it. The node must have computed `block_hash` from
    `block` itself."""

    height: int
    block_hash: bytes
    block: bytes
    certificate: Certificate


@dataclass(frozen=True, slots=True)
class PendingTxs:
    """How many transactions wait in the node's mempool, and an opaque id (the tx hash) of
    the oldest one any honest primary could propose now: the first of its sender's ready
    run (so no nonce gap, even for a primary that lacks the sender's later txs), not too
    big for a block, not expired. The core watches that id to suspect a censoring primary
    (docs/consensus.md §4); None when there is no such tx."""

    count: int
    oldest: bytes | None = None


@dataclass(frozen=True, slots=True)
class CommitFailed:
    """Answer to `CommitBlock` when the chain refused the block: the core stops waiting
    for `Committed` and retries later (by its own "commit" timer, and by fetching the
    block from a certificate signer), instead of sitting in `deciding` for good."""

    height: int
    block_hash: bytes
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PeerConnected:
    """A session to validator `peer` was (re)established. What was sent to it over the old
    session may have been lost with it, so the replica sends its current state again."""

    peer: bytes


@dataclass(frozen=True, slots=True)
class Tick:
    """Optional clock reading; the core does not need it (timers are effects)."""

    now_ms: int


Event = Union[MessageReceived, BlockVerdict, ProposalReady, TimeoutFired, Committed, FetchedBlock,
              PendingTxs, PeerConnected, Tick, CommitFailed]
