"""LevelDB store (plyvel): one database per node, one synced WriteBatch per block."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import plyvel

from ledger.errors import StoreError
from ledger.store.base import Store


# LevelDB's block cache (its default is 8 MiB). Each block reads a few state-tree nodes
# per write at random positions (ledger/statetree.py); with 100,000 accounts a 64 MiB
# cache makes such a read about 3x cheaper (16-24 -> 6 us CPU, scripts/bench_state.py).
CACHE_BYTES = 64 * 1024 * 1024


class LevelDBStore(Store):
    def __init__(self, path: str | Path, *, create: bool = True, read_only: bool = False,
                 cache_bytes: int = CACHE_BYTES):
        self.path = Path(path)
        self.read_only = read_only
        try:
            self._db = plyvel.DB(str(self.path), create_if_missing=create and not read_only,
                                 lru_cache_size=cache_bytes)
        except plyvel.IOError as exc:
            raise StoreError(
                f"cannot open the database at {self.path}: {exc} (is another node using this home?)",
                "store_locked",
            ) from exc
        except plyvel.Error as exc:
            raise StoreError(f"cannot open the database at {self.path}: {exc}") from exc

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def iterate(self, prefix: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        with self._db.iterator(prefix=prefix, reverse=reverse) as it:
            yield from it

    def write(self, puts: dict[bytes, bytes | None], *, sync: bool = True) -> None:
        if self.read_only:
            raise StoreError("store opened read-only")
        # transaction=True: if anything fails while filling the batch, nothing is written
        with self._db.write_batch(sync=sync, transaction=True) as batch:
            for key, value in puts.items():
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()
