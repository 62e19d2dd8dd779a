"""Admission of consensus messages from peers, before the runner's queue.

Decoding and `consensus.messages.check_message` (shape, block hashes, Ed25519) are pure
and run here. Small single-signature messages are checked on the event loop; anything
large or multi-signature (ViewChange, NewView, PrePrepare with its block) goes to a
thread pool (PyNaCl and hashlib release the GIL), so a peer sending heavy frames cannot
stall the loop, the API or other peers. Results are handed on in arrival order per
sender: a sender's later Prepare never overtakes its NewView.

Each sender has a budget of verification work (a token bucket counted in signature
checks, a refused message costing REFUSED_COST): past it, its messages are dropped
unread until the bucket refills, with one log line per penalty. Honest traffic is far
below the budget (a NewView of n = 100 validators is ~4,600 signatures).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from consensus.messages import Message, MessageRefused, NewView, ViewChange, check_message, decode_message
from consensus.state import primary_index
from ledger.block import Block
from ledger.errors import EncodingError

INLINE_BYTES = 16 * 1024  # smaller messages with one signature are checked on the loop
BUDGET = 60_000  # signature checks a sender may cost at once (the bucket's size)
REFILL_PER_S = 6_000  # and per second after that
REFUSED_COST = 2_000  # a refused message costs this much of its sender's budget
VERIFY_THREADS = 2


def block_id(validators: tuple[bytes, ...], rotation_blocks: int) -> Callable[[bytes], bytes]:
    """Block bytes -> block hash, refusing (ValueError) a block whose header names a
    proposer that is not the primary of the (view, height) in the same header: a
    re-proposed block keeps its first primary, so this holds for every honest block."""
    def digest(raw: bytes) -> bytes:
        header = Block.decode(raw).header
        n = len(validators)
        if n == 0 or header.proposer != validators[primary_index(header.view, header.height, n, rotation_blocks)]:
            raise ValueError(f"block {header.height} names proposer {header.proposer.hex()[:16]}, "
                             f"not the primary of view {header.view}")
        return header.hash
    return digest


def signatures(msg: Message) -> int:
    if isinstance(msg, ViewChange):
        return 1 + (0 if msg.prepared is None else 1 + len(msg.prepared.prepares))
    if isinstance(msg, NewView):
        return 1 + (msg.preprepare is not None) + sum(signatures(v) for v in msg.view_changes)
    return 1


@dataclass(frozen=True, slots=True)
class Verdict:
    msg: Message | None  # None: refused
    cost: int  # signature checks spent (or REFUSED_COST)
    error: str = ""


def check_bytes(raw: bytes, chain_id: str, validators: tuple[bytes, ...], rotation_blocks: int) -> Verdict:
    """Decode and check one message. Pure, thread-safe."""
    try:
        msg = decode_message(raw)
        check_message(msg, chain_id, validators, block_id(validators, rotation_blocks))
    except (EncodingError, MessageRefused) as exc:
        return Verdict(None, REFUSED_COST, str(exc))
    except Exception as exc:  # a peer's bytes must never crash the node: refuse, and say why
        return Verdict(None, REFUSED_COST, f"unexpected {type(exc).__name__}: {exc}")
    return Verdict(msg, signatures(msg))


def heavy(raw: bytes) -> bool:
    """Worth a thread: big, or (by its tag, raw[1] of a msgpack fixarray) a ViewChange,
    NewView or PrePrepare."""
    return len(raw) > INLINE_BYTES or raw[1:2] in (b"\x01", b"\x04", b"\x05")


@dataclass
class _Account:
    tokens: float = BUDGET
    at: float = 0.0
    refused: int = 0
    dropped: int = 0
    penalised: bool = False
    pending: collections.deque = field(default_factory=collections.deque)


class InboundGate:
    """Per-sender budget and ordered off-loop verification."""

    def __init__(self, log: logging.Logger, clock: Callable[[], float] = time.monotonic,
                 threads: int = VERIFY_THREADS):
        self.log = log
        self.clock = clock
        self.accounts: dict[bytes, _Account] = {}
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._threads = threads

    def _account(self, sender: bytes) -> _Account:
        acct = self.accounts.get(sender)
        if acct is None:
            acct = self.accounts[sender] = _Account(at=self.clock())
        now = self.clock()
        acct.tokens = min(BUDGET, acct.tokens + (now - acct.at) * REFILL_PER_S)
        acct.at = now
        return acct

    def allowed(self, sender: bytes) -> bool:
        acct = self._account(sender)
        if acct.tokens > 0:
            acct.penalised = False
            return True
        acct.dropped += 1
        if not acct.penalised:
            acct.penalised = True
            self.log.warning("dropping consensus messages from %s: over its verification budget "
                             "(%d refused so far)", sender.hex()[:16], acct.refused)
        return False

    def charge(self, sender: bytes, verdict: Verdict) -> None:
        acct = self._account(sender)
        acct.tokens -= verdict.cost
        if verdict.msg is None:
            acct.refused += 1

    def stats(self) -> dict[str, dict[str, int]]:
        """Per sender (hex): refused and dropped message counts, for metrics and tests."""
        return {k.hex(): {"refused": a.refused, "dropped": a.dropped} for k, a in self.accounts.items()}

    def check(self, sender: bytes, raw: bytes, job: Callable[[], Verdict], deliver: Callable[[Verdict], None]) -> None:
        """Run `job` (a `check_bytes` call) and hand its verdict to `deliver`, on the loop
        for light messages, in the pool for heavy ones; per sender in arrival order."""
        acct = self._account(sender)
        if not acct.pending and not heavy(raw):
            deliver(job())
            return
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(self._threads, thread_name_prefix="cxl-verify")
        fut = asyncio.get_running_loop().run_in_executor(self._pool, job)
        acct.pending.append((fut, deliver))
        fut.add_done_callback(lambda _f: self._release(acct))

    def _release(self, acct: _Account) -> None:
        while acct.pending and acct.pending[0][0].done():
            fut, deliver = acct.pending.popleft()
            if fut.cancelled():
                continue
            if fut.exception() is not None:
                self.log.error("consensus message check failed: %r", fut.exception())
                continue
            deliver(fut.result())

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


__all__ = ["InboundGate", "Verdict", "block_id", "check_bytes", "heavy", "signatures"]
