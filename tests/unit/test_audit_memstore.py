"""ReplayStore meets the store contract and behaves exactly like MemoryStore."""

from __future__ import annotations

import importlib.util
import inspect
import random
from pathlib import Path

import pytest

from audit.memstore import ReplayStore
from ledger.store.memory import MemoryStore

_spec = importlib.util.spec_from_file_location("cxl_store_contract", Path(__file__).with_name("test_store_contract.py"))
contract = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(contract)
CONTRACT_TESTS = sorted(n for n, f in vars(contract).items()
                        if n.startswith("test_") and list(inspect.signature(f).parameters) == ["store"])


@pytest.mark.parametrize("name", CONTRACT_TESTS)
def test_store_contract(name):
    getattr(contract, name)(ReplayStore())


def test_same_answers_as_memory_store_under_random_writes():
    rng = random.Random(7)
    segments = [b"s/bal/", b"s/org/", b"s/", b"t/", b"r/", b"b/", b"m/", b"s/mkt/due/", b"x", b""]
    keys = [rng.choice(segments) + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 3))) for _ in range(300)]
    prefixes = segments + [b"s", b"s/b", b"s/bal", b"s/mkt/", b"\xff"] + keys[:20]
    a, b = MemoryStore(), ReplayStore()
    for step in range(600):
        puts = {rng.choice(keys): (None if rng.random() < 0.35 else b"%d" % step) for _ in range(rng.randrange(1, 8))}
        a.write(puts)
        b.write(puts)
        if step % 3 == 0:
            p = rng.choice(prefixes)
            reverse = rng.random() < 0.3
            assert list(b.iterate(p, reverse=reverse)) == list(a.iterate(p, reverse=reverse)), (step, p)
    for p in prefixes:
        assert list(b.iterate(p)) == list(a.iterate(p))
    assert all(b.get(k) == a.get(k) for k in keys)
