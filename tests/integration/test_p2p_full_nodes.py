"""Full-node sessions over real sockets: validators (PeerNetwork + FakeInbox) accept a
key their node admits as a full node, serve it blocks and take its transactions, refuse
its consensus frames with CLOSE_NOT_VOTER, cap the number of such sessions and close
one whose key is no longer admitted. Unknown keys are refused with a reason."""

from __future__ import annotations

import dataclasses

import aiohttp

from ledger.crypto import Signer
from p2p import wire
from p2p.network import PeerNetwork
from p2p.testing import FAST_LIMITS, Cluster, FakeInbox, free_port, wait_until
from tests.integration.test_p2p_network import OUTSIDER, RawPeer, assert_refused

CHAIN = "cxl-test"
FULL = Signer(b"\x55" * 32)
FULL2 = Signer(b"\x56" * 32)
BLOCKS = [(b"", b"")] + [(b"block%d" % h, b"cert%d" % h) for h in range(1, 6)]


def admitting(cluster: Cluster, *keys: Signer) -> None:
    for node in cluster.nodes:
        node.inbox.blocks = list(BLOCKS)
        node.inbox.full_nodes.update(k.public_key for k in keys)


async def authenticated(port: int, signer: Signer) -> RawPeer:
    peer = await RawPeer.dial(port)
    reply = await peer.send_hello(peer.hello(signer))
    assert reply.type == aiohttp.WSMsgType.BINARY, reply
    wire.decode_welcome(reply.data)
    return peer


def follower(cluster: Cluster, signer: Signer = FULL, limits=FAST_LIMITS) -> PeerNetwork:
    return PeerNetwork(FakeInbox(CHAIN), signer, "127.0.0.1", free_port(), cluster.validators, limits=limits)


async def test_a_listed_full_node_follows_and_hands_over_txs_but_is_no_peer_of_the_validators():
    async with Cluster.build(2) as cluster:
        admitting(cluster, FULL)
        full = follower(cluster)
        await full.start()
        try:
            await wait_until(lambda: all(p["connected"] for p in full.peer_status()))
            assert await full.fetch_blocks(2, None, 2) == BLOCKS[2:4]
            assert full.best_peer_height() == len(BLOCKS) - 1  # the servers' head, sent with the answer
            full.gossip_txs([b"tx-from-a-full-node"])
            await wait_until(lambda: all(b"tx-from-a-full-node" in n.inbox.all_txs() for n in cluster.nodes))
            a = cluster.nodes[0]
            # shown apart from the validators it peers with, never dialled by them
            assert [s["key"] for s in a.net.full_node_status()] == [FULL.public_key.hex()]
            assert FULL.public_key.hex() not in {p["key"] for p in a.net.peer_status()}
            # the request went to one of the two (chosen at random)
            assert sum(n.net.full_node_status()[0]["block_requests"] for n in cluster.nodes) >= 1
        finally:
            await full.stop()


async def test_an_unknown_key_is_refused_with_a_reason_that_names_why():
    async with Cluster.build(2) as cluster:
        admitting(cluster, FULL)
        peer = await RawPeer.dial(cluster.nodes[0].port)
        await assert_refused(peer, peer.hello(OUTSIDER), "not a validator or listed full node")
        stranger = follower(cluster, OUTSIDER)
        await stranger.start()
        try:
            await wait_until(lambda: all("not a validator or listed full node" in p["last_error"]
                                         for p in stranger.peer_status()))
            assert not any(p["connected"] for p in stranger.peer_status())
        finally:
            await stranger.stop()


async def test_a_consensus_frame_from_a_full_node_closes_its_session_and_is_not_delivered():
    async with Cluster.build(2) as cluster:
        admitting(cluster, FULL)
        a = cluster.nodes[0]
        peer = await authenticated(a.port, FULL)
        await peer.ws.send_bytes(wire.encode_frame(wire.ConsensusFrame(b"a vote")))
        msg = await peer.ws.receive(timeout=2)
        assert msg.type == aiohttp.WSMsgType.CLOSE and peer.ws.close_code == wire.CLOSE_NOT_VOTER
        assert "not accepted from a full node" in msg.extra
        await peer.close()
        assert a.inbox.consensus == []


async def test_full_node_sessions_are_capped_and_closed_once_no_longer_admitted():
    limits = dataclasses.replace(FAST_LIMITS, max_full_node_sessions=1)
    async with Cluster.build(2, limits=limits) as cluster:
        admitting(cluster, FULL, FULL2)
        a = cluster.nodes[0]
        first = await authenticated(a.port, FULL)
        second = await RawPeer.dial(a.port)
        await assert_refused(second, second.hello(FULL2), "too many full-node sessions")
        # the validators' own sessions are not counted against the cap
        assert cluster.fully_connected()
        a.inbox.full_nodes.discard(FULL.public_key)  # e.g. governance remove_node
        a.net.refresh_admission()
        msg = await first.ws.receive(timeout=2)
        assert msg.type == aiohttp.WSMsgType.CLOSE and first.ws.close_code == wire.CLOSE_REMOVED
        assert "no longer a validator or listed full node" in msg.extra
        await first.close()


async def test_block_requests_of_a_full_node_are_paced_by_its_budget():
    limits = dataclasses.replace(FAST_LIMITS, full_node_requests_per_s=50.0, full_node_request_burst=2)
    async with Cluster.build(2, limits=limits) as cluster:
        admitting(cluster, FULL)
        a = cluster.nodes[0]
        peer = await authenticated(a.port, FULL)
        for rid in range(1, 6):
            await peer.ws.send_bytes(wire.encode_frame(wire.BlocksRequest(rid, 1, 1)))
        answers = [wire.decode_frame((await peer.ws.receive(timeout=2)).data, 1 << 20) for _ in range(5)]
        assert [r.request_id for r in answers] == [1, 2, 3, 4, 5]  # all answered, in order
        assert a.net.full_node_status()[0]["throttled"] == 3  # beyond the burst of 2: paced
        await peer.close()


async def test_a_full_node_follows_over_pinned_mutual_tls_and_a_stranger_certificate_is_refused():
    from p2p.tls import TLSConfig

    async with Cluster.build(2, tls=True) as cluster:
        admitting(cluster, FULL)
        full = PeerNetwork(FakeInbox(CHAIN), FULL, "127.0.0.1", free_port(), cluster.validators,
                           tls=TLSConfig.for_signer(FULL), limits=FAST_LIMITS)
        stranger = PeerNetwork(FakeInbox(CHAIN), OUTSIDER, "127.0.0.1", free_port(), cluster.validators,
                               tls=TLSConfig.for_signer(OUTSIDER), limits=FAST_LIMITS)
        await full.start()
        await stranger.start()
        try:
            await wait_until(lambda: all(p["connected"] for p in full.peer_status()))
            assert await full.fetch_blocks(1, None, 1) == BLOCKS[1:2]
            await wait_until(lambda: all("not a validator or listed full node" in p["last_error"]
                                         for p in stranger.peer_status()))
        finally:
            await stranger.stop()
            await full.stop()
