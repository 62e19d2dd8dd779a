"""Bounded in-memory structures for the transport: a seen-hash LRU and per-peer queues.

Both are synchronous and never block: when full they forget or drop, and count it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque


class SeenCache:
    """A bounded LRU set of recently seen hashes (duplicate suppression)."""

    __slots__ = ("capacity", "_items")

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._items: OrderedDict[bytes, None] = OrderedDict()

    def add(self, key: bytes) -> bool:
        """Remember `key`; True when it is new, False when it was already seen."""
        items = self._items
        if key in items:
            items.move_to_end(key)
            return False
        items[key] = None
        if len(items) > self.capacity:
            items.popitem(last=False)
        return True

    def __contains__(self, key: bytes) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


class OutboundQueue:
    """Frames waiting for one peer: a priority lane (consensus, block sync) and a bulk lane
    (transaction gossip). Bounded by frame count and bytes; when over, the oldest bulk frame
    goes first, and only when no bulk frame is left the oldest priority frame. `push` never
    blocks and never raises for a full queue."""

    __slots__ = ("max_frames", "max_bytes", "_prio", "_bulk", "nbytes", "dropped", "_ready")

    def __init__(self, max_frames: int, max_bytes: int):
        if max_frames < 1 or max_bytes < 1:
            raise ValueError("queue limits must be positive")
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._prio: deque[bytes] = deque()
        self._bulk: deque[bytes] = deque()
        self.nbytes = 0
        self.dropped = 0
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._prio) + len(self._bulk)

    def push(self, frame: bytes, *, priority: bool) -> None:
        (self._prio if priority else self._bulk).append(frame)
        self.nbytes += len(frame)
        while len(self) > self.max_frames or self.nbytes > self.max_bytes:
            victim = self._bulk.popleft() if self._bulk else self._prio.popleft()
            self.nbytes -= len(victim)
            self.dropped += 1
        if len(self):
            self._ready.set()

    def pop(self) -> bytes | None:
        lane = self._prio if self._prio else self._bulk
        if not lane:
            return None
        frame = lane.popleft()
        self.nbytes -= len(frame)
        if not len(self):
            self._ready.clear()
        return frame

    async def wait(self) -> None:
        """Return when at least one frame is queued."""
        while not len(self):
            self._ready.clear()
            await self._ready.wait()

    def clear(self) -> None:
        self._prio.clear()
        self._bulk.clear()
        self.nbytes = 0
        self._ready.clear()
