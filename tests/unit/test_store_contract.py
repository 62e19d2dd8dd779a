"""One contract suite for every Store backend: memory and LevelDB behave the same."""

from __future__ import annotations

import pytest

from ledger.errors import StoreError
from ledger.store.leveldb import LevelDBStore
from ledger.store.memory import MemoryStore


@pytest.fixture(params=["memory", "leveldb"])
def store(request, tmp_path):
    if request.param == "memory":
        s = MemoryStore()
    else:
        s = LevelDBStore(tmp_path / "db")
    yield s
    s.close()


def test_get_put_delete(store):
    assert store.get(b"k") is None
    store.write({b"k": b"v1"})
    assert store.get(b"k") == b"v1"
    store.write({b"k": b"v2"})
    assert store.get(b"k") == b"v2"
    store.write({b"k": None})
    assert store.get(b"k") is None
    store.write({b"k": None})  # deleting a missing key is fine
    assert store.get(b"k") is None
    store.write({b"empty": b""})
    assert store.get(b"empty") == b""
    assert list(store.iterate(b"empty")) == [(b"empty", b"")]


def test_atomic_multi_key_write(store):
    store.write({b"a": b"1", b"b": b"2", b"c": b"3"})
    store.write({b"a": None, b"b": b"22", b"d": b"4"}, sync=False)
    assert [store.get(k) for k in (b"a", b"b", b"c", b"d")] == [None, b"22", b"3", b"4"]
    assert list(store.iterate(b"")) == [(b"b", b"22"), (b"c", b"3"), (b"d", b"4")]


def test_failed_write_applies_nothing(store):
    store.write({b"a": b"1"})
    with pytest.raises(Exception):
        store.write({b"a": b"2", b"b": 3})  # type: ignore[dict-item]
    assert store.get(b"a") == b"1"
    assert store.get(b"b") is None


def test_prefix_iteration_order_and_reverse(store):
    keys = [b"p/\x00", b"p/a", b"p/ab", b"p/b", b"p/\xff", b"p/\xff\xff", b"p/" + (1).to_bytes(8, "big"),
            b"p/" + (256).to_bytes(8, "big")]
    store.write({k: b"v" + k for k in keys})
    forward = list(store.iterate(b"p/"))
    assert [k for k, _ in forward] == sorted(keys)
    assert all(v == b"v" + k for k, v in forward)
    assert list(store.iterate(b"p/", reverse=True)) == list(reversed(forward))


def test_prefixes_do_not_leak_into_neighbours(store):
    store.write({b"a": b"0", b"a/": b"1", b"a/x": b"2", b"a0": b"3", b"b/x": b"4", b"a.": b"5", b"`z": b"6",
                 b"a/\xff\xff": b"7"})
    assert [k for k, _ in store.iterate(b"a/")] == [b"a/", b"a/x", b"a/\xff\xff"]
    assert [k for k, _ in store.iterate(b"a/", reverse=True)] == [b"a/\xff\xff", b"a/x", b"a/"]
    assert list(store.iterate(b"c/")) == []
    assert list(store.iterate(b"c/", reverse=True)) == []
    assert [k for k, _ in store.iterate(b"b")] == [b"b/x"]
    # a prefix ending in 0xff must not run into the next byte range
    store.write({b"\xff": b"8", b"\xff\xff": b"9", b"\xff\xff\x00": b"10"})
    assert [k for k, _ in store.iterate(b"\xff\xff")] == [b"\xff\xff", b"\xff\xff\x00"]
    assert [k for k, _ in store.iterate(b"\xff\xff", reverse=True)] == [b"\xff\xff\x00", b"\xff\xff"]


def test_deleted_keys_disappear_from_iteration(store):
    store.write({b"p/1": b"1", b"p/2": b"2", b"p/3": b"3"})
    store.write({b"p/2": None})
    assert [k for k, _ in store.iterate(b"p/")] == [b"p/1", b"p/3"]
    store.write({b"p/2": b"again"})
    assert dict(store.iterate(b"p/"))[b"p/2"] == b"again"


def test_iteration_is_a_snapshot(store):
    store.write({b"p/1": b"1", b"p/2": b"2", b"p/3": b"3", b"p/4": b"4"})
    it = store.iterate(b"p/")
    assert next(it) == (b"p/1", b"1")
    # writes during iteration are not seen by an iterator already running
    store.write({b"p/2": b"changed", b"p/3": None, b"p/25": b"new", b"p/5": b"new"})
    assert list(it) == [(b"p/2", b"2"), (b"p/3", b"3"), (b"p/4", b"4")]
    assert list(store.iterate(b"p/")) == [
        (b"p/1", b"1"), (b"p/2", b"changed"), (b"p/25", b"new"), (b"p/4", b"4"), (b"p/5", b"new"),
    ]


def test_writing_while_iterating_a_prefix_is_safe(store):
    store.write({b"p/%d" % i: b"x" for i in range(10)})
    seen = []
    for k, _ in store.iterate(b"p/"):
        seen.append(k)
        store.write({k: None, k + b"!": b"y"})
    assert len(seen) == 10
    assert sorted(k for k, _ in store.iterate(b"p/")) == sorted(k + b"!" for k in seen)


def test_leveldb_persists_across_reopen(tmp_path):
    path = tmp_path / "db"
    s = LevelDBStore(path)
    s.write({b"a": b"1", b"b": b"2"})
    s.write({b"a": None})
    s.close()
    s = LevelDBStore(path)
    try:
        assert s.get(b"a") is None and s.get(b"b") == b"2"
        assert list(s.iterate(b"")) == [(b"b", b"2")]
    finally:
        s.close()


def test_leveldb_second_opener_gets_a_clear_error(tmp_path):
    s = LevelDBStore(tmp_path / "db")
    try:
        with pytest.raises(StoreError) as exc:
            LevelDBStore(tmp_path / "db")
        assert exc.value.code == "store_locked"
    finally:
        s.close()


def test_leveldb_missing_without_create(tmp_path):
    with pytest.raises(StoreError):
        LevelDBStore(tmp_path / "nope", create=False)
