"""A layered view of ledger state: reads fall through, writes stay in the top layer.

Execution works on a `StateView` over the committed store. Each transaction runs in a
child view that is merged on success and dropped on failure, so an invalid transaction
can never leave a partial write behind. Values are canonical msgpack; keys are bytes
without the store's state prefix.

The state root committing to all of it is the root of the state tree (ledger/statetree.py),
computed from a block's `writes` by `ledger.execution.execute_block`.
"""

from __future__ import annotations

from typing import Any, Iterator

from ledger.encoding import decode, encode
from ledger.store.base import PREFIX_STATE, Store

_DELETED = None


class StateView:
    def __init__(self, parent: "StateView | Store"):
        self._parent = parent
        self.writes: dict[bytes, bytes | None] = {}

    # raw bytes --------------------------------------------------------------
    def get_raw(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        if isinstance(self._parent, StateView):
            return self._parent.get_raw(key)
        return self._parent.get(PREFIX_STATE + key)

    def iter_raw(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Live items under `prefix`, in key order, with this view's writes applied."""
        if isinstance(self._parent, StateView):
            base = dict(self._parent.iter_raw(prefix))
        else:
            n = len(PREFIX_STATE)
            base = {k[n:]: v for k, v in self._parent.iterate(PREFIX_STATE + prefix)}
        for key, value in self.writes.items():
            if key.startswith(prefix):
                if value is None:
                    base.pop(key, None)
                else:
                    base[key] = value
        for key in sorted(base):
            yield key, base[key]

    def first_raw(self, prefix: bytes) -> tuple[bytes, bytes] | None:
        """The first live item under `prefix` in key order, or None: reads the committed
        store lazily (one seek on LevelDB), not the whole range as `iter_raw` does."""
        return next(self._iter_lazy(prefix), None)

    def _iter_lazy(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        if isinstance(self._parent, StateView):
            below = self._parent._iter_lazy(prefix)
        else:
            n = len(PREFIX_STATE)
            below = ((k[n:], v) for k, v in self._parent.iterate(PREFIX_STATE + prefix))
        mine = sorted((k, v) for k, v in self.writes.items() if k.startswith(prefix))
        i = 0
        for key, value in below:
            while i < len(mine) and mine[i][0] < key:  # own writes before this key
                if mine[i][1] is not None:
                    yield mine[i]
                i += 1
            if i < len(mine) and mine[i][0] == key:  # overwritten or deleted here
                if mine[i][1] is not None:
                    yield mine[i]
                i += 1
                continue
            yield key, value
        for key, value in mine[i:]:
            if value is not None:
                yield key, value

    # decoded values ---------------------------------------------------------
    def get(self, key: bytes, default: Any = None) -> Any:
        raw = self.get_raw(key)
        return default if raw is None else decode(raw)

    def put(self, key: bytes, value: Any) -> None:
        self.writes[key] = encode(value)

    def delete(self, key: bytes) -> None:
        self.writes[key] = _DELETED

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, Any]]:
        for key, raw in self.iter_raw(prefix):
            yield key, decode(raw)

    # layering ---------------------------------------------------------------
    def child(self) -> "StateView":
        return StateView(self)

    def merge_into_parent(self) -> None:
        if not isinstance(self._parent, StateView):
            raise TypeError("the bottom view has no parent view to merge into")
        self._parent.writes.update(self.writes)
        self.writes = {}

    def store(self) -> Store:
        """The committed store at the bottom of this stack of views."""
        view = self
        while isinstance(view._parent, StateView):
            view = view._parent
        return view._parent

    def store_writes(self) -> dict[bytes, bytes | None]:
        """This view's writes as store keys (with the state prefix)."""
        return {PREFIX_STATE + k: v for k, v in self.writes.items()}
