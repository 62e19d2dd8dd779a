"""In-memory store: the same contract as LevelDB, for tests and the simulator."""

from __future__ import annotations

import bisect
from typing import Iterator

from ledger.store.base import Store


class MemoryStore(Store):
    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def iterate(self, prefix: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        lo = bisect.bisect_left(self._keys, prefix)
        keys = []
        for key in self._keys[lo:]:
            if not key.startswith(prefix):
                break
            keys.append(key)
        if reverse:
            keys.reverse()
        # a snapshot of the keys: writes during iteration don't disturb it
        for key in keys:
            value = self._data.get(key)
            if value is not None:
                yield key, value

    def write(self, puts: dict[bytes, bytes | None], *, sync: bool = True) -> None:
        for key, value in puts.items():
            if value is None:
                if self._data.pop(key, None) is not None:
                    del self._keys[bisect.bisect_left(self._keys, key)]
            else:
                if key not in self._data:
                    bisect.insort(self._keys, key)
                self._data[key] = bytes(value)
