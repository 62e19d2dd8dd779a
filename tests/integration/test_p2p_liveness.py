"""Sessions that die silently (a partition: packets vanish, nothing is closed) are noticed,
shown as disconnected, redialled when the path heals, and every new session is reported
to the node so it can re-send its consensus state. Clock offsets are measured at the
handshake. Real PeerNetworks on 127.0.0.1; the partition is a TCP relay that stops
forwarding bytes without closing anything (what iptables DROP or netem loss 100 % do)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from p2p.session import now_ms
from p2p.testing import FAST_LIMITS, Cluster, wait_until

# Short liveness limits so the test is quick; the defaults are a ping a second, dead after 5 s.
LIVENESS = dataclasses.replace(FAST_LIMITS, ping_interval_s=0.1, dead_after_s=0.5, heartbeat_s=1.0,
                               user_timeout_s=1.0)


class Relay:
    """127.0.0.1 TCP relay to `target`; `cut()` silently drops every byte both ways and
    lets new connections hang (like a partition), `heal()` forwards again."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.cut_off = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        self.cut_off = True

    def heal(self) -> None:
        self.cut_off = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if self.cut_off:  # a SYN into the void: the dial hangs until its own timeout
            await reader.read()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers.add(up_writer)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer),
                             return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if not self.cut_off:
                writer.write(data)
                await writer.drain()
        writer.close()

    async def stop(self) -> None:
        for w in self._writers:
            w.close()
        if self._server is not None:
            self._server.close()


def link_status(node, peer) -> dict:
    return next(p for p in node.net.peer_status() if p["key"] == peer.key.hex())


async def cluster_with_relay(limits=LIVENESS) -> tuple[Cluster, Relay]:
    """Two nodes; a dials b through the relay, b dials a directly."""
    cluster = Cluster.build(2, limits=limits)
    a, b = cluster.nodes
    relay = Relay(b.port)
    await relay.start()
    cluster.validators[1]["p2p"] = f"http://127.0.0.1:{relay.port}"
    a.net.set_validators(cluster.validators)
    return cluster, relay


async def test_a_silently_dead_session_shows_disconnected_and_heals_with_a_reconnect_event():
    cluster, relay = await cluster_with_relay()
    a, b = cluster.nodes
    try:
        await cluster.start()
        await wait_until(cluster.fully_connected)
        assert a.inbox.connected == [b.key] and b.inbox.connected == [a.key]
        relay.cut()
        # nothing was closed: only the missing pongs tell a that the session is dead
        await wait_until(lambda: not link_status(a, b)["connected"], timeout=10)
        a.net.send(b.key, b"sent while cut off")
        await asyncio.sleep(0.3)
        assert not link_status(a, b)["connected"] and a.inbox.connected == [b.key]
        relay.heal()
        await wait_until(lambda: link_status(a, b)["connected"], timeout=10)
        assert a.inbox.connected == [b.key, b.key]  # the node hears of the new session
        assert link_status(a, b)["reconnects"] >= 1
        await wait_until(lambda: (a.key, b"sent while cut off") in b.inbox.consensus)
        b.net.send(a.key, b"other direction never broke")
        await wait_until(lambda: (b.key, b"other direction never broke") in a.inbox.consensus)
    finally:
        await cluster.stop()
        await relay.stop()


async def test_with_the_default_limits_a_dead_session_is_noticed_in_seconds_not_tens():
    """The issue measured `connected: true` for ~22 s after a partition (15 s heartbeat)
    and a 10 s redial backoff; the defaults now notice and redial within a few seconds."""
    from p2p.config import Limits

    cluster, relay = await cluster_with_relay(Limits())
    a, b = cluster.nodes
    try:
        await cluster.start()
        await wait_until(cluster.fully_connected, timeout=10)
        relay.cut()
        await wait_until(lambda: not link_status(a, b)["connected"], timeout=8)
        await asyncio.sleep(3)  # a few failed dials: the backoff must stay short
        relay.heal()
        await wait_until(lambda: link_status(a, b)["connected"], timeout=5)
    finally:
        await cluster.stop()
        await relay.stop()


async def test_a_failing_reconnect_callback_does_not_break_the_session(caplog):
    cluster = Cluster.build(2, limits=LIVENESS)
    a, b = cluster.nodes

    def broken(peer_key: bytes) -> None:
        raise RuntimeError("node bug")

    a.inbox.on_peer_connected = broken
    async with cluster:
        a.net.send(b.key, b"still delivered")
        await wait_until(lambda: (a.key, b"still delivered") in b.inbox.consensus)
    assert "on_peer_connected raised" in caplog.text


async def test_clock_offsets_are_measured_at_the_handshake_and_a_far_one_is_logged(caplog):
    cluster = Cluster.build(4, limits=LIVENESS)
    fast = cluster.nodes[3]
    fast.net.clock_ms = lambda: now_ms() + 5_000  # this node's clock runs 5 s fast
    caplog.set_level(logging.WARNING, logger="cxl.p2p")
    async with cluster:
        honest = cluster.nodes[:3]
        for node in honest:
            offset = link_status(node, fast)["clock_offset_ms"]
            assert 4_500 <= offset <= 5_500, offset
            for other in honest:
                if other is not node:
                    assert abs(link_status(node, other)["clock_offset_ms"]) <= 500
            assert -5_500 <= link_status(fast, node)["clock_offset_ms"] <= -4_500
            # the median of the peers' clocks: one wrong peer does not make a node look skewed
            assert abs(node.net.clock_skew_ms()) <= 500
        assert 4_500 <= fast.net.clock_skew_ms() <= 5_500  # while the wrong one sees it
    assert "clock of peer" in caplog.text and "check NTP" in caplog.text
