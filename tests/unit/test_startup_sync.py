"""Start-up sync (node/startup_sync.py) with a fake four-validator network: one peer lags
(it has nothing), the others have the chain. The node must not start its core on the
lagging peer's word, and a node without a signing record must let one more block be
committed without it before it signs anything."""

from __future__ import annotations

import asyncio

from consensus.state import SignedState
from genesis.testnet import make_testnet
from ledger import accounts
from ledger.block import Certificate, commit_signing_bytes
from ledger.store.memory import MemoryStore
from ledger.tx import make_tx

from node.mempool import Mempool
from node.runner import Runner, persist_signed_state
from node.transport import NullTransport

NET = make_testnet(n_validators=4)
ME, LAGGING, GOOD_A, GOOD_B = (v.public_key for v in NET.validators)
ADMIN = NET.admins["org1"]


def reference_chain(blocks: int, with_me: bool = True):
    """Certified blocks; with_me=False: proposed and certified by the other three only."""
    ref = NET.chain()
    cert = None
    signers = NET.validators if with_me else NET.validators[1:]
    for n in range(blocks):
        tx = make_tx(ADMIN, NET.doc["chain_id"], n, "transfer", {"to": NET.operators["org2"].address, "amount": 1})
        block, _ = ref.build_block([tx], time_ms=1_700_000_100_000 + n, view=0,
                                   proposer=signers[0].public_key, last_cert=cert)
        votes = {v.public_key: v.sign(commit_signing_bytes(ref.chain_id, 0, block.height, block.hash))
                 for v in signers}
        cert = Certificate.build(block.height, 0, block.hash, votes)
        ref.commit_block(block, cert, ref.validate_block(block))
    return ref


class Peers(NullTransport):
    """Each peer serves its own copy; asked without a peer, the lagging one answers first
    (it was the first to connect)."""

    def __init__(self, ref, heights: dict[bytes, int]):
        super().__init__()
        self.ref, self.heights = ref, heights
        self.asked: list = []

    async def fetch_blocks(self, from_height, peer_key, limit):
        self.asked.append((peer_key, from_height))
        top = self.heights[peer_key if peer_key is not None else LAGGING]
        return [(self.ref.get_block_raw(h), self.ref.get_cert(h).encode())
                for h in range(from_height, top + 1)][:limit]


class Core:
    def __init__(self, chain, height, log):
        self.chain, self.height = chain, height
        log.append(self)
        self.started_at = None

    def start(self):
        self.started_at = self.chain.height
        return []

    def on_event(self, event):
        return []


def node(store, transport):
    chain = NET.chain(store)
    mp = Mempool(chain.chain_id, lambda a: (True, accounts.next_nonce(chain.state(), a)))
    cores: list[Core] = []
    runner = Runner(chain, mp, NET.validators[0], transport, sync_interval_ms=0,
                    replica_factory=lambda rec, h: Core(chain, h, cores))
    return runner, chain, cores


async def test_a_lagging_peer_does_not_end_the_sync_and_a_node_without_record_waits_one_block():
    ref = reference_chain(4)
    peers = Peers(ref, {LAGGING: 0, GOOD_A: 3, GOOD_B: 3})  # block 4 is not committed yet
    runner, chain, cores = node(MemoryStore(), peers)
    runner.start()
    try:
        for _ in range(100):
            await asyncio.sleep(0.01)
            if chain.height == 3:
                break
        assert chain.height == 3  # from the peers that have it, though the lagging one answered first
        await asyncio.sleep(0.3)
        assert cores[-1].started_at is None  # no record: nothing signed at height 4 ...
        peers.heights.update({GOOD_A: 4, GOOD_B: 4})  # ... until the others commit it
        for _ in range(200):
            await asyncio.sleep(0.01)
            if cores[-1].started_at is not None:
                break
        assert chain.height == 4 and (cores[-1].height, cores[-1].started_at) == (5, 4)
        assert chain.head.block_hash == ref.head.block_hash
    finally:
        await runner.stop()


async def test_a_node_with_its_record_starts_at_the_head_the_peers_confirm():
    ref = reference_chain(3)
    store = MemoryStore()
    persist_signed_state(store, SignedState(1, 0, (("prepare", ref.get_block(1).hash),)))
    peers = Peers(ref, {LAGGING: 0, GOOD_A: 3, GOOD_B: 3})
    runner, chain, cores = node(store, peers)
    runner.start()
    try:
        for _ in range(200):
            await asyncio.sleep(0.01)
            if cores[-1].started_at is not None:
                break
        assert (chain.height, cores[-1].height, cores[-1].started_at) == (3, 4, 3)
        # f+1 = 2 distinct peers, one of them with the chain, confirmed height 3 is the head
        at_head = {p for p, h in peers.asked if h == 4}
        assert len(at_head) >= 2 and at_head & {GOOD_A, GOOD_B} and None not in at_head
    finally:
        await runner.stop()


async def test_a_fresh_network_with_no_blocks_starts_without_waiting():
    peers = Peers(reference_chain(0), {LAGGING: 0, GOOD_A: 0, GOOD_B: 0})
    runner, chain, cores = node(MemoryStore(), peers)
    runner.start()
    try:
        for _ in range(200):
            await asyncio.sleep(0.01)
            if cores[-1].started_at is not None:
                break
        assert (chain.height, cores[-1].started_at) == (0, 0)
    finally:
        await runner.stop()


async def test_a_node_that_never_signed_starts_at_once_without_waiting_for_a_block():
    """A new validator (or one slower to start than the others on a fresh chain) is in no
    certificate and proposed no block: nothing to protect, so no wait."""
    ref = reference_chain(2, with_me=False)
    peers = Peers(ref, {LAGGING: 2, GOOD_A: 2, GOOD_B: 2})
    runner, chain, cores = node(MemoryStore(), peers)
    runner.start()
    try:
        for _ in range(200):
            await asyncio.sleep(0.01)
            if cores[-1].started_at is not None:
                break
        assert (chain.height, cores[-1].height, cores[-1].started_at) == (2, 3, 2)
    finally:
        await runner.stop()
