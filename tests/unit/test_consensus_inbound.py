"""What the node lets through to the consensus core (node/inbound.py, Runner.on_consensus_bytes):
block bytes bound to their signed digest and to the right proposer, heavy messages checked
off the event loop in per-sender order, and a budget per sender."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from consensus import events as ev
from consensus.messages import (
    NewView, PreparedCert, ViewChange, encode_message, make_prepare, make_preprepare, make_view_change,
)
from genesis.testnet import make_testnet
from ledger import accounts
from ledger.store.memory import MemoryStore

from node import inbound
from node.mempool import Mempool
from node.runner import Runner
from node.transport import NullTransport

NET = make_testnet(n_validators=4, chain_id="cxl-inbound")


def setup():
    chain = NET.chain(MemoryStore())
    mp = Mempool(chain.chain_id, lambda a: (True, accounts.next_nonce(chain.state(), a)))
    by_key = {s.public_key: s for s in NET.validators}
    signers = [by_key[k] for k in chain.validator_keys]  # in validator-set order: signers[v % 4] leads view v
    runner = Runner(chain, mp, signers[3], NullTransport())
    return runner, chain, signers


def a_block(chain, proposer: bytes, view: int = 0, later_ms: int = 1):
    block, _ = chain.build_block([], time_ms=chain.head.time_ms + later_ms, view=view, proposer=proposer,
                                 last_cert=None)
    return block


def queued(runner) -> list:
    out = []
    while not runner.queue.empty():
        item = runner.queue.get_nowait()
        if isinstance(item, ev.MessageReceived):
            out.append(item.msg)
    return out


async def settle(runner, want: int):
    for _ in range(200):
        if runner.queue.qsize() >= want:
            return
        await asyncio.sleep(0.01)


async def test_a_preprepare_whose_bytes_do_not_hash_to_its_digest_is_refused():
    runner, chain, signers = setup()
    good = a_block(chain, signers[0].public_key)
    other = a_block(chain, signers[0].public_key, later_ms=2)
    assert other.hash != good.hash
    pp = make_preprepare(signers[0], chain.chain_id, 0, 1, good.hash, good.encode())
    swapped = replace(pp, block=other.encode())  # same signature, same digest, other bytes
    runner.on_consensus_bytes(signers[0].public_key, encode_message(swapped))
    runner.on_consensus_bytes(signers[0].public_key, encode_message(pp))
    await settle(runner, 1)
    await asyncio.sleep(0.05)
    assert queued(runner) == [pp]
    assert runner._inbound_gate().stats()[signers[0].public_key.hex()]["refused"] == 1


async def test_a_block_naming_another_proposer_than_the_primary_of_its_view_is_refused():
    runner, chain, signers = setup()
    forged = a_block(chain, signers[2].public_key)  # view 0: signers[0] leads
    pp = make_preprepare(signers[0], chain.chain_id, 0, 1, forged.hash, forged.encode())
    runner.on_consensus_bytes(signers[0].public_key, encode_message(pp))
    honest = a_block(chain, signers[0].public_key)
    ok = make_preprepare(signers[0], chain.chain_id, 0, 1, honest.hash, honest.encode())
    runner.on_consensus_bytes(signers[0].public_key, encode_message(ok))
    await settle(runner, 1)
    await asyncio.sleep(0.05)
    assert queued(runner) == [ok]
    # a re-proposal keeps the first primary as proposer: a block of view 0 in view 1 is fine
    again = make_preprepare(signers[1], chain.chain_id, 1, 1, honest.hash, honest.encode())
    assert inbound.check_bytes(encode_message(again), chain.chain_id, tuple(chain.validator_keys), 30).msg == again


async def test_heavy_messages_are_checked_off_the_loop_and_stay_in_order_per_sender():
    runner, chain, signers = setup()
    cid = chain.chain_id
    blk = a_block(chain, signers[0].public_key)
    pp = make_preprepare(signers[0], cid, 0, 1, blk.hash, blk.encode())
    cert = PreparedCert(pp, tuple(make_prepare(s, cid, 0, 1, blk.hash) for s in signers[1:3]))
    vc = make_view_change(signers[1], cid, 1, 0, cert)
    prep = make_prepare(signers[1], cid, 0, 1, blk.hash)
    assert inbound.heavy(encode_message(vc)) and not inbound.heavy(encode_message(prep))
    runner.on_consensus_bytes(signers[1].public_key, encode_message(vc))
    runner.on_consensus_bytes(signers[1].public_key, encode_message(prep))
    assert runner.queue.qsize() == 0  # the light Prepare waits behind the heavy ViewChange
    await settle(runner, 2)
    assert queued(runner) == [vc, prep]


async def test_a_sender_over_its_budget_is_dropped_and_the_others_are_not(caplog):
    runner, chain, signers = setup()
    cid = chain.chain_id
    junk = b"\x07" * 64
    # a NewView with more view changes than q: refused by shape, each costs its sender
    nv = NewView(1, 1, tuple(ViewChange(1, 0, None, s.public_key, junk) for s in signers), None,
                 signers[1].public_key, junk)
    caplog.set_level(logging.INFO, logger="cxl.node")
    for _ in range(inbound.BUDGET // inbound.REFUSED_COST + 5):
        runner.on_consensus_bytes(signers[1].public_key, encode_message(nv))
    await asyncio.sleep(0.2)
    assert queued(runner) == []
    bad = make_prepare(signers[1], cid, 0, 1, b"\x01" * 32)
    good = make_prepare(signers[2], cid, 0, 1, b"\x01" * 32)
    runner.on_consensus_bytes(signers[1].public_key, encode_message(bad))
    runner.on_consensus_bytes(signers[2].public_key, encode_message(good))
    await asyncio.sleep(0.05)
    assert queued(runner) == [good]
    stats = runner._inbound_gate().stats()[signers[1].public_key.hex()]
    assert stats["refused"] >= inbound.BUDGET // inbound.REFUSED_COST and stats["dropped"] >= 1
    assert "over its verification budget" in caplog.text
