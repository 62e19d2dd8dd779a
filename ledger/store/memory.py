"""In-memory store: the same contract as LevelDB, for tests and the simulator."""

from __future__ import annotations

import bisect
from typing import Iterator

from ledger.store.base import Store


def check_batch(puts: dict[bytes, bytes | None]) -> None:
    """Check a whole batch before applying any of it, so a bad entry cannot leave half a
    batch applied (LevelDB refuses non-bytes the same way, inside its write batch)."""
    for key, value in puts.items():
        if not isinstance(key, bytes) or not (value is None or isinstance(value, (bytes, bytearray, memoryview))):
            raise TypeError(f"store keys and values must be bytes, got {type(key).__name__}: {type(value).__name__}")


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
        # a snapshot of keys and values, like a LevelDB iterator: later writes are not seen
        items = [(key, self._data[key]) for key in keys]
        yield from items

    def write(self, puts: dict[bytes, bytes | None], *, sync: bool = True) -> None:
        check_batch(puts)
        for key, value in puts.items():
            if value is None:
                if self._data.pop(key, None) is not None:
                    del self._keys[bisect.bisect_left(self._keys, key)]
            else:
                if key not in self._data:
                    bisect.insort(self._keys, key)
                self._data[key] = bytes(value)
