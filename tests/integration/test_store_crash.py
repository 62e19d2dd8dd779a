"""Crash safety: SIGKILL a process committing blocks; the store always holds a block prefix.

A writer subprocess (crash_writer.py) commits certified blocks of transfers to a
LevelDB-backed chain. We kill it at random moments, reopen the store and check that it
holds exactly blocks 1..h with their certificates, tx index and receipts, nothing above
h, a head state root equal to block h's header, and that re-executing 1..h on a fresh
memory chain reaches the same state. Then the writer resumes from there.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.chain import h8
from ledger.encoding import decode
from ledger.statetree import iter_leaves, root_hash
from ledger.store.base import PREFIX_BLOCK, PREFIX_CERT, PREFIX_HASH, PREFIX_RECEIPT, PREFIX_TX
from ledger.store.leveldb import LevelDBStore
from ledger.tx import decode_tx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import crash_writer  # noqa: E402

SEED = 6_2026_1126
KILLS = 15
TIME_BUDGET_S = 20.0


def _keys(store, prefix):
    return [k for k, _ in store.iterate(prefix)]


def _run_until_killed(db: Path, rng: random.Random) -> int:
    """Start the writer, kill it after a random delay; return the last height it reported."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "crash_writer.py"), str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("ready"), (line, proc.stderr.read() if proc.poll() is not None else "")
        reported = int(line.split()[1])
        time.sleep(rng.uniform(0.0, 0.35))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        for line in proc.stdout.read().splitlines():
            if line.startswith("committed"):
                reported = int(line.split()[1])
        return reported
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.slow
def test_sigkill_leaves_a_block_prefix(tmp_path):
    rng = random.Random(SEED)
    db = tmp_path / "chain-db"
    net = crash_writer.testnet()
    replica = net.chain()  # a fresh memory chain that re-executes every stored block
    tx_index: dict[bytes, list[int]] = {}
    block_hashes: dict[int, bytes] = {}
    started = time.monotonic()
    rounds = 0
    last_h = 0
    while rounds < KILLS and time.monotonic() - started < TIME_BUDGET_S:
        rounds += 1
        reported = _run_until_killed(db, rng)
        store = LevelDBStore(db)
        try:
            chain = net.chain(store)
            h = chain.height
            where = f"(seed {SEED}, round {rounds}, head {h})"
            # everything the writer saw committed is durable, and nothing was lost from before
            assert h >= reported >= last_h, where

            # exactly blocks 1..h, with certificates and hash index; none above h
            assert _keys(store, PREFIX_BLOCK) == [PREFIX_BLOCK + h8(i) for i in range(1, h + 1)], where
            assert _keys(store, PREFIX_CERT) == [PREFIX_CERT + h8(i) for i in range(1, h + 1)], where
            assert len(_keys(store, PREFIX_HASH)) == h, where
            assert chain.get_block(h + 1) is None and chain.get_cert(h + 1) is None

            # earlier blocks are untouched
            for i, bh in block_hashes.items():
                assert chain.get_block(i).hash == bh, where

            # re-execute the new blocks on the fresh replica, verifying each certificate
            for i in range(replica.height + 1, h + 1):
                block, cert = chain.get_block(i), chain.get_cert(i)
                assert chain.height_of(block.hash) == i, where
                cert.verify(chain.chain_id, [v.public_key for v in net.validators])
                result = replica.apply_certified(block, cert)
                assert result.state_root == block.header.state_root, where
                block_hashes[i] = block.hash
                for j, raw in enumerate(block.txs):
                    tx_index[decode_tx(raw).hash] = [i, j]
                assert chain.receipts(i) == result.receipts, where

            # the tx index and receipts cover exactly the stored blocks' transactions
            stored_index = {k[len(PREFIX_TX):]: decode(v) for k, v in store.iterate(PREFIX_TX)}
            assert stored_index == tx_index, where
            assert len(_keys(store, PREFIX_RECEIPT)) == len(tx_index), where

            # the head in meta matches block h, and the replica agrees on the state
            if h:
                top = chain.get_block(h).header
                assert chain.head.state_root == top.state_root and chain.head.block_hash == top.hash, where
                assert chain.head.time_ms == top.time_ms, where
            assert replica.head == chain.head, where
            assert list(store.iterate(b"s/")) == list(replica.store.iterate(b"s/")), where
            # the state tree is at the same block boundary: its head version holds exactly
            # the state, under the head's root
            assert root_hash(store, h) == chain.head.state_root, where
            assert sorted(iter_leaves(store, h)) == [(k[2:], v) for k, v in store.iterate(b"s/")], where
            last_h = h
        finally:
            store.close()
    assert rounds >= 8, f"only {rounds} kill rounds fit in the time budget"
    assert last_h >= 5, "the writer barely committed anything: the test exercised little"
