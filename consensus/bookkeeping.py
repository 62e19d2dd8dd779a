"""What the replica keeps about other validators' messages, each store bounded per sender,
so that one byzantine validator sending junk only pushes out its own entries (issue 9):
the equivocation log, the commit tally of the current height, the future-message buffer.
Pure data structures; the replica decides what goes in."""

from __future__ import annotations

from typing import Callable, Iterator

from consensus.messages import Commit

MAX_SEEN = 32  # positions kept per (kind, sender) for equivocation detection
MAX_COMMIT_KEYS = 8  # (view, block hash) pairs counted per sender and height


def _position(key: tuple) -> tuple[int, int]:
    """Order of the keys of one (kind, sender), by (height, view); a key is (kind, sender,
    view, height), except that a "vc" key holds (new_view, last committed height) and is
    at position (height + 1, view)."""
    if key[0] == "vc":
        return key[3] + 1, key[2]
    return key[3], key[2]


class SeenLog:
    """Per position (kind, sender, view, height) the digest a sender signed there, and the
    message until a conflict has been reported. At most MAX_SEEN positions per (kind,
    sender): the lowest go first."""

    def __init__(self) -> None:
        self.entries: dict[tuple, tuple[bytes, object]] = {}
        self._keys: dict[tuple, list[tuple]] = {}

    def check(self, key: tuple, digest: bytes, msg) -> tuple[bool, object | None]:
        """(the sender signed something else here, the earlier message if this is the first
        such conflict: evidence to report once)."""
        prev = self.entries.get(key)
        if prev is None:
            self.entries[key] = (digest, msg)
            keys = self._keys.setdefault(key[:2], [])
            keys.append(key)
            if len(keys) > MAX_SEEN:
                keys.sort(key=_position)
                self.entries.pop(keys.pop(0), None)
            return False, None
        if prev[0] == digest:
            return False, None
        if prev[1] is not None:
            self.entries[key] = (prev[0], None)
        return True, prev[1]

    def prune(self, keep: Callable[[tuple], bool]) -> None:
        self.entries = {k: v for k, v in self.entries.items() if keep(k)}
        self._keys = {}
        for k in self.entries:
            self._keys.setdefault(k[:2], []).append(k)

    def __iter__(self) -> Iterator[tuple]:
        return iter(self.entries)

    def __getitem__(self, key: tuple) -> tuple[bytes, object]:
        return self.entries[key]

    def __len__(self) -> int:
        return len(self.entries)


class CommitTally:
    """Commits at one height by (view, block hash), at most MAX_COMMIT_KEYS pairs per
    sender, its highest. An honest validator commit-votes in few views per height, and any
    q matching Commits of one view certify the one block committable at the height, so
    dropping a sender's lowest views never loses a decision."""

    def __init__(self) -> None:
        self.votes: dict[tuple[int, bytes], dict[bytes, Commit]] = {}
        self._by_sender: dict[bytes, list[tuple[int, bytes]]] = {}

    def add(self, c: Commit) -> tuple[int, bytes] | None:
        """Count `c`; its (view, hash) pair, or None if it is below all of its sender's."""
        key = (c.view, c.block_hash)
        keys = self._by_sender.setdefault(c.sender, [])
        if key not in keys:
            if len(keys) >= MAX_COMMIT_KEYS:
                low = min(keys)
                if key < low:
                    return None
                keys.remove(low)
                votes = self.votes.get(low, {})
                votes.pop(c.sender, None)
                if not votes:
                    self.votes.pop(low, None)
            keys.append(key)
        self.votes.setdefault(key, {})[c.sender] = c
        return key

    def get(self, key: tuple[int, bytes]) -> dict[bytes, Commit]:
        return self.votes.get(key, {})

    def keys(self) -> list[tuple[int, bytes]]:
        return list(self.votes)

    def keys_for(self, block_hash: bytes) -> list[tuple[int, bytes]]:
        return [k for k in self.votes if k[1] == block_hash]

    def count(self) -> int:
        """Commits held, all pairs together."""
        return sum(len(v) for v in self.votes.values())


def weight(msg) -> int:
    """Roughly the bytes a buffered message holds (its block, if any, dominates)."""
    return 256 + len(getattr(msg, "block", b""))


class FutureBuffer:
    """Messages for a later height or view, kept for replay, within a quota per sender
    (`max_count` messages and `max_bytes`), so no validator crowds out the others'."""

    def __init__(self, max_count: int, max_bytes: int) -> None:
        self.max_count, self.max_bytes = max_count, max_bytes
        self._msgs: list = []
        self._use: dict[bytes, tuple[int, int]] = {}

    def add(self, msg) -> bool:
        count, size = self._use.get(msg.sender, (0, 0))
        size += weight(msg)
        if count >= self.max_count or size > self.max_bytes:
            return False
        self._use[msg.sender] = (count + 1, size)
        self._msgs.append(msg)
        return True

    def take(self) -> list:
        """Everything buffered, in arrival order; the buffer is empty after."""
        msgs, self._msgs, self._use = self._msgs, [], {}
        return msgs

    def __iter__(self) -> Iterator:
        return iter(self._msgs)

    def __len__(self) -> int:
        return len(self._msgs)

    def __contains__(self, msg) -> bool:
        return msg in self._msgs
