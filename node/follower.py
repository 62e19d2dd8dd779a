"""Following the chain without voting: the full-node side of the runner.

A node whose key is not in the validator set (config role "full", or a validator that
governance removed) follows the chain by certified block sync and never signs. Each
fetched block is taken only if

1. its certificate certifies exactly this block and carries a quorum of signatures from
   the validator set this node tracks for that height (`Chain.validator_keys`: the set
   installed by the blocks this node executed itself, so set changes are followed
   block by block from the genesis), and
2. re-executing it on this node's state gives the header's roots
   (`Chain.validate_block`): a certified block is still checked, never trusted.

A block that fails either is refused (`FollowRefused`, with the chain's stable code),
counted, and the answer it came in is dropped; the next poll asks again (from any peer).

The role itself follows the validator set: `role_of` says what a key is for the next
height, `role_change` what changed at a commit. The runner acts on it (node/runner.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.block import Block, Certificate
from ledger.chain import Chain
from ledger.encoding import decode
from ledger.errors import LedgerError, StoreError
from ledger.execution import BlockResult

VALIDATOR = "validator"
FULL = "full"


class FollowRefused(Exception):
    """A fetched block this node will not apply; `code` is the chain's stable code."""

    def __init__(self, height: int | None, code: str, message: str):
        self.height, self.code, self.message = height, code, message
        super().__init__(f"block {height if height is not None else '?'} refused ({code}): {message}")


@dataclass(frozen=True, slots=True)
class Followed:
    block: Block
    certificate: Certificate
    result: BlockResult


def decode_fetched(block_raw: bytes, cert_raw: bytes) -> tuple[Block, Certificate]:
    """A (block, certificate) pair as a peer sent it; `FollowRefused` if it is garbage."""
    try:
        return Block.decode(block_raw), Certificate.from_wire(decode(cert_raw))
    except (LedgerError, ValueError, TypeError) as exc:
        raise FollowRefused(None, getattr(exc, "code", "malformed"), str(exc)) from None


def apply_followed(chain: Chain, block: Block, cert: Certificate) -> Followed:
    """Verify `cert` against the tracked validator set, re-execute `block`, commit both.
    Raises `FollowRefused` for a block this node must not take (nothing is written);
    a `StoreError` (the disk) passes through: the caller halts."""
    height = block.header.height
    if height != chain.height + 1:
        raise FollowRefused(height, "not_next", f"the chain is at {chain.height}")
    if cert.height != height or cert.block_hash != block.hash:
        raise FollowRefused(height, "bad_certificate", "the certificate is for another block")
    try:
        cert.verify(chain.chain_id, chain.validator_keys)
    except LedgerError as exc:
        raise FollowRefused(height, getattr(exc, "code", "bad_certificate"),
                            f"certificate does not verify against the validator set for this height: {exc}") from None
    try:
        result = chain.validate_block(block)
        chain.commit_block(block, cert, result)
    except StoreError:
        raise
    except LedgerError as exc:
        raise FollowRefused(height, getattr(exc, "code", "invalid"), str(exc)) from None
    return Followed(block, cert, result)


def role_of(validator_keys, key: bytes) -> str:
    """What `key` is for the next height: a voter, or a full node."""
    return VALIDATOR if bytes(key) in [bytes(k) for k in validator_keys] else FULL


@dataclass(frozen=True, slots=True)
class RoleChange:
    old: str
    new: str
    height: int  # the first height of the new role

    @property
    def removed(self) -> bool:
        return self.old == VALIDATOR and self.new == FULL

    @property
    def joined(self) -> bool:
        return self.old == FULL and self.new == VALIDATOR


def role_change(old: str, validator_keys, key: bytes, next_height: int) -> RoleChange | None:
    """The change of role once the set for `next_height` is `validator_keys`, or None."""
    new = role_of(validator_keys, key)
    return None if new == old else RoleChange(old, new, next_height)


__all__ = ["FULL", "VALIDATOR", "FollowRefused", "Followed", "RoleChange", "apply_followed", "decode_fetched",
           "role_change", "role_of"]
