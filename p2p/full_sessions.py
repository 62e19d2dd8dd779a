"""Inbound sessions of full (non-validator) nodes: their per-session request budget and
what status shows about them.

A full node follows the chain by asking for certified blocks; it may also hand over
transactions. It never votes: `PeerNetwork` closes its session on a consensus frame.
Who is admitted at all is the node's decision (`PeerNetwork.admission`); this module
only meters what an admitted session asks for.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass(slots=True)
class RequestBudget:
    """A token bucket: `rate` requests a second on average, bursts of `burst`.
    `delay()` takes one token and says how long the caller must wait before it may
    serve the request (0.0 when a token was there). Tokens are never borrowed beyond
    one request ahead per call, so a flood only queues up behind its own session."""

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    tokens: float = -1.0
    stamp: float = 0.0

    def delay(self) -> float:
        now = self.clock()
        if self.tokens < 0 and self.stamp == 0.0:  # first use: a full bucket
            self.tokens, self.stamp = float(self.burst), now
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


@dataclass(slots=True)
class InboundSession:
    """One authenticated session another node opened to us."""

    key: bytes
    remote: str
    budget: RequestBudget
    since: float = field(default_factory=time.monotonic)
    block_requests: int = 0
    blocks_served: int = 0
    txs_received: int = 0
    throttled: int = 0  # block requests that had to wait for the budget

    async def pace(self) -> None:
        """Wait as long as the request budget says (full-node sessions only)."""
        wait = self.budget.delay()
        if wait > 0:
            self.throttled += 1
            await asyncio.sleep(wait)

    def status(self) -> dict:
        return {
            "key": self.key.hex(),
            "remote": self.remote,
            "connected_s": int(time.monotonic() - self.since),
            "block_requests": self.block_requests,
            "blocks_served": self.blocks_served,
            "txs_received": self.txs_received,
            "throttled": self.throttled,
        }


__all__ = ["InboundSession", "RequestBudget"]
