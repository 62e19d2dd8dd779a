"""The storage interface: get, prefix iteration and one atomic write per block.

Two backends implement it (memory for tests and simulation, LevelDB for nodes) and one
contract suite (tests/unit/test_store_contract.py) runs against both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterator

# Key prefixes: one LevelDB per node, each concern in its own key range.
PREFIX_STATE = b"s/"      # ledger state (accounts, orgs, market …)
PREFIX_BLOCK = b"b/"      # height (8 bytes BE) -> block encoding
PREFIX_CERT = b"c/"       # height -> certificate encoding
PREFIX_HASH = b"h/"       # block hash -> height
PREFIX_TX = b"t/"         # tx hash -> [height, index]
PREFIX_RECEIPT = b"r/"    # height (8 bytes) + index (4 bytes) -> receipt encoding
PREFIX_WAL = b"w/"        # consensus write-ahead records (last signed position …)
PREFIX_META = b"m/"       # chain meta: head height, state root, genesis hash
PREFIX_TREE_NODE = b"n/"  # state tree nodes by version + position (ledger/statetree.py)
PREFIX_TREE_ROOT = b"q/"  # state tree root reference by version
PREFIX_TREE_STALE = b"x/"  # state tree pruning index: stale-since version + node key


class Store(ABC):
    @abstractmethod
    def get(self, key: bytes) -> bytes | None: ...

    @abstractmethod
    def iterate(self, prefix: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """Items whose key starts with `prefix`, in key order (or reversed)."""

    @abstractmethod
    def write(self, puts: dict[bytes, bytes | None], *, sync: bool = True) -> None:
        """Apply all puts (value None = delete) atomically; durable before return if sync."""

    def close(self) -> None:  # pragma: no cover - trivial default
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
