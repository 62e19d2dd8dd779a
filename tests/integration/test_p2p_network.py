"""PeerNetwork end to end: real aiohttp servers on 127.0.0.1, several nodes in one process."""

from __future__ import annotations

import asyncio
import dataclasses
import os

import aiohttp
import pytest
from aiohttp import web

from ledger.crypto import Signer
from ledger.encoding import encode
from p2p import wire
from p2p.errors import PeerUnavailable
from p2p.network import PeerNetwork
from p2p.session import now_ms
from p2p.testing import FAST_LIMITS, Cluster, FakeInbox, free_port, wait_until
from p2p.tls import TLSConfig

CHAIN = "cxl-test"
# A validator whose key the test drives by hand (raw WebSocket client, no PeerNetwork).
ROGUE = Signer(b"\x77" * 32)
ROGUE_ENTRY = {"key": ROGUE.public_key, "org": "rogue-org", "p2p": "http://127.0.0.1:9", "api": ""}
OUTSIDER = Signer(b"\x66" * 32)


class RawPeer:
    """A hand-driven client session, to send what an honest PeerNetwork never would."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, challenge: wire.Challenge):
        self.http, self.ws, self.challenge = http, ws, challenge

    @classmethod
    async def dial(cls, port: int) -> "RawPeer":
        http = aiohttp.ClientSession()
        ws = await http.ws_connect(f"http://127.0.0.1:{port}{wire.WS_PATH}", max_msg_size=64 * 1024 * 1024)
        msg = await ws.receive()
        return cls(http, ws, wire.decode_challenge(msg.data))

    def hello(self, signer: Signer, *, time_ms: int | None = None, challenge: bytes | None = None) -> bytes:
        return wire.encode_hello(signer, CHAIN, self.challenge.server_key, challenge or self.challenge.challenge,
                                 now_ms() if time_ms is None else time_ms, os.urandom(32))

    async def send_hello(self, hello: bytes) -> aiohttp.WSMessage:
        await self.ws.send_bytes(hello)
        return await self.ws.receive(timeout=2)

    async def close(self) -> None:
        await self.ws.close()
        await self.http.close()


async def authenticated_rogue(port: int) -> RawPeer:
    peer = await RawPeer.dial(port)
    reply = await peer.send_hello(peer.hello(ROGUE))
    assert reply.type == aiohttp.WSMsgType.BINARY and wire.decode_welcome(reply.data)
    return peer


async def assert_refused(peer: RawPeer, hello: bytes, reason: str) -> None:
    reply = await peer.send_hello(hello)
    assert reply.type == aiohttp.WSMsgType.CLOSE, reply
    assert peer.ws.close_code == wire.CLOSE_REFUSED
    assert reason in reply.extra
    await peer.close()


async def assert_still_works(cluster: Cluster) -> None:
    a, b = cluster.nodes[0], cluster.nodes[1]
    marker = os.urandom(8)
    b.net.send(a.key, marker)
    await wait_until(lambda: (b.key, marker) in a.inbox.consensus)


# --------------------------------------------------------------------- delivery


async def test_broadcast_reaches_every_other_validator_and_send_reaches_one():
    async with Cluster.build(4) as cluster:
        a, b, c, d = cluster.nodes
        a.net.broadcast(b"pre-prepare")
        await wait_until(lambda: all(n.inbox.consensus == [(a.key, b"pre-prepare")] for n in (b, c, d)))
        assert a.inbox.consensus == []  # never to itself
        c.net.send(d.key, b"view-change")
        await wait_until(lambda: (c.key, b"view-change") in d.inbox.consensus)
        await asyncio.sleep(0.05)
        assert all((c.key, b"view-change") not in n.inbox.consensus for n in (a, b))
        for i in range(50):  # order is kept within one session
            b.net.send(a.key, b"m%d" % i)
        await wait_until(lambda: len(a.inbox.consensus) == 50)
        assert [m for _, m in a.inbox.consensus] == [b"m%d" % i for i in range(50)]
        status = {p["org"]: p for p in a.net.peer_status()}
        assert set(status) == {"org1", "org2", "org3"}
        assert status["org1"]["connected"] and status["org1"]["inbound"] and status["org1"]["received"] == 50
        assert status["org1"]["sent"] == 1 and status["org1"]["dropped"] == 0
        assert status["org1"]["key"] == b.key.hex() and status["org1"]["url"].startswith("http://127.0.0.1:")


async def test_tx_gossip_is_batched_and_deduplicated():
    async with Cluster.build(3) as cluster:
        a, b, c = cluster.nodes
        txs = [b"tx-%04d" % i for i in range(600)]
        a.net.gossip_txs(txs[:300])
        a.net.gossip_txs(txs[:300] + txs[300:])  # 300 repeats, suppressed at the sender
        await wait_until(lambda: len(b.inbox.all_txs()) == 600 and len(c.inbox.all_txs()) == 600)
        assert sorted(b.inbox.all_txs()) == sorted(txs)
        # 600 txs in a few frames (max 256 per frame), not 600 frames
        assert 3 <= len(b.inbox.txs) <= 5
        assert next(p for p in a.net.peer_status() if p["org"] == "org1")["sent"] <= 5
        # the same tx from a second sender is delivered once; a repeat gossip sends nothing
        c.net.gossip_txs([txs[0], b"fresh-from-c"])
        a.net.gossip_txs(txs[:10])
        await wait_until(lambda: b"fresh-from-c" in b.inbox.all_txs())
        await asyncio.sleep(0.05)
        assert sorted(b.inbox.all_txs()) == sorted(txs + [b"fresh-from-c"])
        # a tx received from a peer is not gossiped back out
        before = next(p for p in b.net.peer_status() if p["org"] == "org2")["sent"]
        b.net.gossip_txs(txs[:100])
        await asyncio.sleep(0.05)
        assert next(p for p in b.net.peer_status() if p["org"] == "org2")["sent"] == before


async def test_block_fetch_from_a_peer_or_any_peer():
    limits = dataclasses.replace(FAST_LIMITS, max_blocks_per_request=8)
    async with Cluster.build(3, limits=limits) as cluster:
        a, b, c = cluster.nodes
        chain = [(b"block-%d" % h, b"cert-%d" % h) for h in range(30)]
        b.inbox.blocks = chain
        assert await a.net.fetch_blocks(5, b.key, 3) == chain[5:8]
        assert await a.net.fetch_blocks(10, b.key, 100) == chain[10:18]  # capped per request
        assert await a.net.fetch_blocks(40, b.key, 5) == []  # beyond the tip
        assert await a.net.fetch_blocks(0, None, 4) == chain[:4]  # c has none; b answers
        results = await asyncio.gather(*(a.net.fetch_blocks(h, b.key, 2) for h in range(0, 20, 2)))
        assert [blk for r in results for blk in r] == chain[:20]
        with pytest.raises(PeerUnavailable):
            await a.net.fetch_blocks(0, OUTSIDER.public_key, 4)


async def rogue_server(port: int, on_request) -> web.AppRunner:
    """A server holding ROGUE's key that passes the handshake, then answers block
    requests with whatever `on_request(request)` returns (None: stay silent)."""

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        challenge = os.urandom(32)
        await ws.send_bytes(wire.encode_challenge(CHAIN, ROGUE.public_key, challenge))
        hello = wire.decode_hello((await ws.receive()).data)
        await ws.send_bytes(wire.encode_welcome(ROGUE, CHAIN, hello.client_key, hello.client_nonce, now_ms()))
        async for msg in ws:
            frame = wire.decode_frame(msg.data, 1 << 20)
            if isinstance(frame, wire.BlocksRequest):
                answer = on_request(frame)
                if answer is not None:
                    await ws.send_bytes(wire.encode_frame(answer))
        return ws

    app = web.Application()
    app.router.add_get(wire.WS_PATH, handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


@pytest.mark.parametrize("behaviour", ["silent", "too_many_blocks"])
async def test_block_fetch_fails_cleanly_on_a_bad_server(behaviour):
    port = free_port()
    entry = {**ROGUE_ENTRY, "p2p": f"http://127.0.0.1:{port}"}
    limits = dataclasses.replace(FAST_LIMITS, fetch_timeout_s=0.3)
    if behaviour == "silent":
        answer = lambda req: None  # noqa: E731
    else:
        answer = lambda req: wire.BlocksResponse(req.request_id, ((b"b", b"c"),) * (req.limit + 1))  # noqa: E731
    runner = await rogue_server(port, answer)
    try:
        async with Cluster.build(1, limits=limits, extra_validators=[entry]) as cluster:
            a = cluster.nodes[0]
            await wait_until(lambda: a.net.peer_status()[0]["connected"])
            with pytest.raises(PeerUnavailable, match="did not answer" if behaviour == "silent" else "closed"):
                await a.net.fetch_blocks(0, ROGUE.public_key, 4)
            if behaviour == "too_many_blocks":  # the session was closed and is redialled
                await wait_until(lambda: a.net.peer_status()[0]["reconnects"] >= 1)
            await wait_until(lambda: a.net.peer_status()[0]["connected"])
            with pytest.raises(PeerUnavailable):
                await a.net.fetch_blocks(0, None, 4)
    finally:
        await runner.cleanup()


# ------------------------------------------------------------- authentication


async def test_non_validator_is_refused_at_handshake():
    async with Cluster.build(2) as cluster:
        a = cluster.nodes[0]
        peer = await RawPeer.dial(a.port)
        await assert_refused(peer, peer.hello(OUTSIDER), "not a current validator")
        # a real PeerNetwork with an unknown key never gets a session either
        outsider_port = free_port()
        validators = cluster.validators + [
            {"key": OUTSIDER.public_key, "org": "x", "p2p": f"http://127.0.0.1:{outsider_port}", "api": ""}]
        outsider = PeerNetwork(FakeInbox(CHAIN), OUTSIDER, "127.0.0.1", outsider_port, validators, limits=FAST_LIMITS)
        await outsider.start()
        try:
            await asyncio.sleep(0.2)
            assert not any(p["connected"] for p in outsider.peer_status())
            assert "not a current validator" in next(
                p for p in outsider.peer_status() if p["org"] == "org0")["last_error"]
            outsider.broadcast(b"let me in")
            await asyncio.sleep(0.05)
            assert all(not n.inbox.consensus for n in cluster.nodes)
        finally:
            await outsider.stop()
        await assert_still_works(cluster)


async def test_bad_signature_replay_and_stale_time_are_refused():
    async with Cluster.build(2, extra_validators=[ROGUE_ENTRY]) as cluster:
        a = cluster.nodes[0]
        # bad signature: a valid hello with one bit of the signature flipped
        peer = await RawPeer.dial(a.port)
        good = wire.decode_hello(peer.hello(ROGUE))
        forged = encode(["hello", good.client_key, good.challenge, good.time_ms, good.client_nonce,
                         bytes([good.signature[0] ^ 1]) + good.signature[1:]])
        await assert_refused(peer, forged, "bad hello signature")
        # replay: a hello captured on one connection, sent on another
        first = await RawPeer.dial(a.port)
        captured = first.hello(ROGUE)
        second = await RawPeer.dial(a.port)
        await assert_refused(second, captured, "replayed")
        await first.close()
        # stale (and future) time
        peer = await RawPeer.dial(a.port)
        await assert_refused(peer, peer.hello(ROGUE, time_ms=now_ms() - 120_000), "check clocks")
        peer = await RawPeer.dial(a.port)
        await assert_refused(peer, peer.hello(ROGUE, time_ms=now_ms() + 120_000), "check clocks")
        # garbage instead of a hello
        peer = await RawPeer.dial(a.port)
        await assert_refused(peer, b"\x92\xa5hello", "hello")
        # the honest handshake still works, and so does the cluster
        ok = await authenticated_rogue(a.port)
        await ok.close()
        await assert_still_works(cluster)


async def test_silent_client_is_cut_off_after_the_handshake_timeout():
    limits = dataclasses.replace(FAST_LIMITS, handshake_timeout_s=0.2)
    async with Cluster.build(2, limits=limits) as cluster:
        peer = await RawPeer.dial(cluster.nodes[0].port)
        msg = await peer.ws.receive(timeout=2)
        assert msg.type == aiohttp.WSMsgType.CLOSE and "timed out" in msg.extra
        await peer.close()


async def test_removed_validator_is_disconnected_and_refused():
    async with Cluster.build(3) as cluster:
        a, b, c = cluster.nodes
        remaining = [v for v in cluster.validators if v["key"] != c.key]
        a.net.set_validators(remaining)
        b.net.set_validators(remaining)
        await wait_until(lambda: [p["org"] for p in a.net.peer_status()] == ["org1"])
        c.net.broadcast(b"still here?")
        await asyncio.sleep(0.2)
        assert not a.inbox.consensus and not b.inbox.consensus
        assert not any(p["connected"] for p in c.net.peer_status())
        await assert_still_works(cluster)


# ------------------------------------------------------------------ robustness


async def test_malformed_frame_closes_only_that_session():
    async with Cluster.build(2, extra_validators=[ROGUE_ENTRY]) as cluster:
        a, b = cluster.nodes
        for garbage in (b"\xc1\xc1", encode(["nonsense", 1]), encode(["blocks_resp", [1, []]])):
            rogue = await authenticated_rogue(a.port)
            await rogue.ws.send_bytes(garbage)
            msg = await rogue.ws.receive(timeout=2)
            assert msg.type == aiohttp.WSMsgType.CLOSE and rogue.ws.close_code == wire.CLOSE_PROTOCOL
            await rogue.close()
        rogue = await authenticated_rogue(a.port)
        await rogue.ws.send_str("text frame")
        msg = await rogue.ws.receive(timeout=2)
        assert msg.type == aiohttp.WSMsgType.CLOSE and rogue.ws.close_code == wire.CLOSE_PROTOCOL
        await rogue.close()
        await assert_still_works(cluster)
        assert all(p["connected"] for p in a.net.peer_status() if p["org"] == "org1")


async def test_oversized_frame_closes_only_that_session():
    limits = dataclasses.replace(FAST_LIMITS, max_frame_bytes=64 * 1024, max_batch_bytes=32 * 1024)
    async with Cluster.build(2, limits=limits, extra_validators=[ROGUE_ENTRY]) as cluster:
        a = cluster.nodes[0]
        rogue = await authenticated_rogue(a.port)
        await rogue.ws.send_bytes(wire.encode_frame(wire.ConsensusFrame(b"x" * 100_000)))
        msg = await rogue.ws.receive(timeout=2)
        assert msg.type == aiohttp.WSMsgType.CLOSE and rogue.ws.close_code == wire.CLOSE_TOO_BIG
        await rogue.close()
        assert not a.inbox.consensus
        await assert_still_works(cluster)


async def test_a_restarted_peer_is_reconnected_and_gets_queued_messages():
    cluster = Cluster.build(3)
    async with cluster:
        a, b, c = cluster.nodes
        await b.net.stop()
        await wait_until(lambda: not next(p for p in a.net.peer_status() if p["org"] == "org1")["connected"])
        a.net.broadcast(b"while you were away")
        a.net.gossip_txs([b"tx-while-away"])
        await asyncio.sleep(0.1)
        assert (a.key, b"while you were away") in c.inbox.consensus
        restarted = cluster.make_node(b.signer, b.port)  # fresh process state, same key and port
        cluster.nodes[1] = restarted
        await restarted.net.start()
        await wait_until(cluster.fully_connected)
        await wait_until(lambda: (a.key, b"while you were away") in restarted.inbox.consensus)
        await wait_until(lambda: b"tx-while-away" in restarted.inbox.all_txs())
        status = next(p for p in a.net.peer_status() if p["org"] == "org1")
        assert status["reconnects"] >= 1 and status["connected"]
        restarted.net.send(a.key, b"back")
        await wait_until(lambda: (b.key, b"back") in a.inbox.consensus)


async def test_queues_stay_bounded_while_a_peer_is_down():
    limits = dataclasses.replace(FAST_LIMITS, max_queue_frames=20, max_batch_txs=10)
    cluster = Cluster.build(2, limits=limits)
    a, b = cluster.nodes
    await a.net.start()  # b never started: a dials a dead port and keeps queueing
    try:
        for i in range(200):
            a.net.gossip_txs([b"tx-%d-%d" % (i, j) for j in range(10)])  # one full batch each
            if i % 20 == 0:
                a.net.broadcast(b"vote-%d" % i)
        await asyncio.sleep(0.1)
        status = a.net.peer_status()[0]
        assert not status["connected"] and status["queued"] == 20 and status["dropped"] == 200 + 10 - 20
        await b.net.start()
        await wait_until(lambda: len(b.inbox.consensus) == 10)  # every consensus message survived
        assert [m for _, m in b.inbox.consensus] == [b"vote-%d" % i for i in range(0, 200, 20)]
        await wait_until(lambda: len(b.inbox.all_txs()) == 100)  # only the newest gossip
        assert b"tx-199-9" in b.inbox.all_txs() and b"tx-0-0" not in b.inbox.all_txs()
    finally:
        await cluster.stop()


# ------------------------------------------------------------------------- TLS


async def test_tls_sessions_with_pinned_keys_carry_traffic():
    async with Cluster.build(3, tls=True) as cluster:
        a, b, c = cluster.nodes
        a.net.broadcast(b"over tls")
        a.net.gossip_txs([b"tls-tx"])
        await wait_until(lambda: all((a.key, b"over tls") in n.inbox.consensus for n in (b, c)))
        await wait_until(lambda: all(n.inbox.all_txs() == [b"tls-tx"] for n in (b, c)))
        b.inbox.blocks = [(b"blk", b"crt")]
        assert await a.net.fetch_blocks(0, b.key, 5) == [(b"blk", b"crt")]


@pytest.mark.parametrize("cert_of", ["outsider", "another validator"])
async def test_tls_refuses_a_certificate_for_the_wrong_key(cert_of):
    cluster = Cluster.build(3, tls=True)
    a, b, c = cluster.nodes
    # b holds its node key but presents a TLS certificate for another key
    wrong = TLSConfig.for_signer(OUTSIDER if cert_of == "outsider" else c.signer)
    with pytest.raises(ValueError, match="not this node's key"):  # an honest node refuses to start so
        cluster.make_node(b.signer, b.port, tls=wrong)
    impostor = cluster.make_node(b.signer, b.port, tls=True)
    impostor.net.client_ssl, impostor.net._server_ssl = wrong.client_context(), wrong.server_context()
    cluster.nodes[1] = impostor
    async with asyncio.timeout(10):
        await cluster.start()
        try:
            await wait_until(lambda: next(p for p in a.net.peer_status() if p["org"] == "org2")["connected"])
            await asyncio.sleep(0.2)
            a_view = next(p for p in a.net.peer_status() if p["org"] == "org1")
            b_view = next(p for p in impostor.net.peer_status() if p["org"] == "org0")
            assert not a_view["connected"] and "not the pinned node key" in a_view["last_error"]
            reason = "not a current validator" if cert_of == "outsider" else "differs from the client's TLS"
            assert not b_view["connected"] and "closed the session (4001" in b_view["last_error"]
            assert reason in b_view["last_error"]
            assert not a_view["inbound"] and not b_view["inbound"]
            a.net.send(b.key, b"x")
            impostor.net.send(a.key, b"y")
            await asyncio.sleep(0.1)
            assert not a.inbox.consensus and not impostor.inbox.consensus
        finally:
            await cluster.stop()


async def test_tls_server_refuses_a_plain_or_certless_client():
    async with Cluster.build(2, tls=True) as cluster:
        a = cluster.nodes[0]
        async with aiohttp.ClientSession() as http:
            with pytest.raises((aiohttp.ClientError, OSError)):
                await http.ws_connect(f"http://127.0.0.1:{a.port}{wire.WS_PATH}")
            # TLS without a client certificate: the server demands one, so no challenge ever comes
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            try:
                ws = await http.ws_connect(f"https://127.0.0.1:{a.port}{wire.WS_PATH}", ssl=ctx)
            except (aiohttp.ClientError, OSError) as exc:
                print("certless client refused:", repr(exc))
            else:
                msg = await ws.receive(timeout=2)
                assert msg.type != aiohttp.WSMsgType.BINARY, "server talked to a client without a certificate"
        await assert_still_works(cluster)


async def test_a_busy_port_is_reported_and_nothing_leaks():
    async with Cluster.build(2) as cluster:
        a = cluster.nodes[0]
        clash = PeerNetwork(FakeInbox(CHAIN), OUTSIDER, "127.0.0.1", a.port, cluster.validators, limits=FAST_LIMITS)
        with pytest.raises(OSError, match="cannot listen"):
            await clash.start()
        await clash.stop()  # harmless
        await assert_still_works(cluster)


async def test_block_responses_are_trimmed_to_the_frame_limit():
    limits = dataclasses.replace(FAST_LIMITS, max_frame_bytes=64 * 1024, max_batch_bytes=32 * 1024)
    async with Cluster.build(2, limits=limits) as cluster:
        a, b = cluster.nodes
        b.inbox.blocks = [(bytes([h]) * 20_000, b"cert") for h in range(10)]
        got = await a.net.fetch_blocks(2, b.key, 8)
        assert got == b.inbox.blocks[2:5]  # three 20 kB blocks fit in a 64 KiB frame
        assert all(p["connected"] for p in a.net.peer_status())
