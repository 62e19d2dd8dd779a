"""cli/nonces.py: the per-address lock and the local record of the next nonce."""

from __future__ import annotations

import multiprocessing

import pytest

from cli.common import CliError
from cli.nonces import CACHE_TTL_MS, NonceReservation
from ledger.crypto import address_from_payload

ADDR = address_from_payload(b"\xab" * 20)
T0 = 1_796_119_200_000


def test_node_nonce_is_used_until_a_send_is_recorded(tmp_path):
    with NonceReservation(ADDR, "c", tmp_path) as r:
        assert r.choose(5, now_ms=T0) == 5 and not r.from_cache
        r.accepted(5, now_ms=T0)
    with NonceReservation(ADDR, "c", tmp_path) as r:
        # another node has not seen nonce 5 yet (it says 5): the local record says 6
        assert r.choose(5, now_ms=T0 + 1000) == 6 and r.from_cache
        # the node is ahead of the record (sends from elsewhere): the node wins
        assert r.choose(9, now_ms=T0 + 1000) == 9 and not r.from_cache


@pytest.mark.parametrize("chain, age", [("other-chain", 1000), ("c", CACHE_TTL_MS + 1), ("c", -5000)])
def test_record_of_another_chain_or_too_old_is_ignored(tmp_path, chain, age):
    with NonceReservation(ADDR, chain, tmp_path) as r:
        r.accepted(41, now_ms=T0)
    with NonceReservation(ADDR, "c", tmp_path) as r:
        assert r.choose(3, now_ms=T0 + age) == 3


def test_a_refused_send_records_nothing_and_forget_drops_the_record(tmp_path):
    with NonceReservation(ADDR, "c", tmp_path) as r:
        r.choose(2, now_ms=T0)  # ... and the node refused: accepted() never called
    assert not (tmp_path / f"{ADDR}.json").exists()
    with NonceReservation(ADDR, "c", tmp_path) as r:
        r.accepted(2, now_ms=T0)
        r.forget()
    with NonceReservation(ADDR, "c", tmp_path) as r:
        assert r.choose(2, now_ms=T0) == 2


def test_a_corrupt_record_is_ignored(tmp_path):
    (tmp_path / f"{ADDR}.json").write_text("{not json")
    with NonceReservation(ADDR, "c", tmp_path) as r:
        assert r.choose(4) == 4


def _hold(directory, ready, release):
    with NonceReservation(ADDR, "c", directory):
        ready.set()
        release.wait(30)


def test_lock_excludes_another_process_and_times_out_with_a_clear_error(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(tmp_path, ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(CliError, match="held the nonce lock"):
            with NonceReservation(ADDR, "c", tmp_path, wait_s=0.3):
                pass
        with NonceReservation(address_from_payload(b"\xcd" * 20), "c", tmp_path, wait_s=0.3):
            pass  # another address is not blocked
    finally:
        release.set()
        holder.join(30)
    with NonceReservation(ADDR, "c", tmp_path, wait_s=5):
        pass  # free again once the holder is gone


def test_accepted_releases_the_lock_before_the_block_ends(tmp_path):
    with NonceReservation(ADDR, "c", tmp_path) as r:
        r.accepted(0)
        with NonceReservation(ADDR, "c", tmp_path, wait_s=0.3) as again:  # would time out if still held
            assert again.choose(0) == 1


def test_unwritable_directory_says_what_to_do(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CliError, match="CXL_NONCE_DIR"):
        with NonceReservation(ADDR, "c", blocker / "sub"):
            pass
