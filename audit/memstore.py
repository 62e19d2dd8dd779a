"""An in-memory store for replay: MemoryStore's contract, without its cost at chain scale.

`MemoryStore` keeps one sorted list of every key and inserts with `bisect.insort`, a
memmove of the whole list per new key. Replay adds two index keys per transaction at
random positions (``t/<hash>``), so after a million transactions each insert moves
megabytes. `ReplayStore` keeps keys in groups (by the store prefix and the first path
segment: ``s/bal/``, ``s/org/``, ``t/``…), each a sorted list brought up to date only
when that group is iterated: adds are appended and sorted in (Timsort merges the sorted
run with the new tail), deletes filtered out. Replay iterates only a few small state
groups while executing, so most groups are sorted once, at the final store comparison.
"""

from __future__ import annotations

import bisect
from typing import Iterator

from ledger.store.memory import MemoryStore, check_batch

_SLASH = 0x2F


def _group(key: bytes) -> bytes:
    """``s/bal/…`` -> ``s/bal/``; ``s/supply`` -> ``s/``; ``t/…`` -> ``t/``; short keys -> themselves."""
    if len(key) < 2:
        return key
    second = key.find(b"/", 2)
    if key[:2] == b"s/" and second != -1:
        return key[: second + 1]
    return key[:2]


class _Group:
    __slots__ = ("keys", "added", "removed")

    def __init__(self) -> None:
        self.keys: list[bytes] = []              # sorted, as of the last refresh
        self.added: dict[bytes, None] = {}       # new since then (never in `keys`)
        self.removed: set[bytes] = set()         # in `keys`, deleted since then

    def sorted_keys(self) -> list[bytes]:
        if self.removed:
            self.keys = [k for k in self.keys if k not in self.removed]
            self.removed = set()
        if self.added:
            self.keys.extend(self.added)
            self.keys.sort()
            self.added = {}
        return self.keys


class ReplayStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self._groups: dict[bytes, _Group] = {}

    def iterate(self, prefix: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        names = sorted(g for g in self._groups if g.startswith(prefix) or prefix.startswith(g))
        keys: list[bytes] = []
        for name in names:
            ordered = self._groups[name].sorted_keys()
            lo = bisect.bisect_left(ordered, prefix)
            for key in ordered[lo:]:
                if not key.startswith(prefix):
                    break
                keys.append(key)
        if len(names) > 1:
            keys.sort()
        if reverse:
            keys.reverse()
        # a snapshot of keys and values, like a LevelDB iterator: later writes are not seen
        items = [(key, self._data[key]) for key in keys]
        yield from items

    def write(self, puts: dict[bytes, bytes | None], *, sync: bool = True) -> None:
        check_batch(puts)
        data, groups = self._data, self._groups
        for key, value in puts.items():
            if value is None:
                if data.pop(key, None) is not None:
                    group = groups[_group(key)]
                    if key in group.added:
                        del group.added[key]
                    else:
                        group.removed.add(key)
            else:
                if key not in data:
                    name = _group(key)
                    group = groups.get(name)
                    if group is None:
                        group = groups[name] = _Group()
                    if key in group.removed:  # deleted and written again before a refresh
                        group.removed.discard(key)
                    else:
                        group.added[key] = None
                data[key] = bytes(value)
