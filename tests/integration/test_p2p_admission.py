"""The p2p port under a flood of connections that never authenticate (the reported
outage: 20,110 idle TCP connections used up a validator's file descriptors). Real
servers on 127.0.0.1; flooders bind other loopback addresses (127.0.0.2, …) so the
per-address cap is visible. Bounded counts, bounded waits, no timing assertions."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest

from p2p.testing import FAST_LIMITS, Cluster, wait_until

LIMITS = dataclasses.replace(FAST_LIMITS, max_unauthenticated=6, max_unauthenticated_per_host=4,
                             handshake_timeout_s=2.0, close_timeout_s=0.2)
# (the deadline is long enough that a slow, shared test machine opens a whole flood inside it)


async def open_idle(port: int, source: str, count: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    return [await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)) for _ in range(count)]


async def closed_by_server(reader: asyncio.StreamReader, wait_s: float) -> bool:
    """True when the server closed (EOF or reset) within `wait_s`; False if it stayed open."""
    try:
        return await asyncio.wait_for(reader.read(1), wait_s) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except asyncio.TimeoutError:
        return False


async def close_all(conns) -> None:
    for _, writer in conns:
        writer.close()


async def test_an_idle_flood_is_capped_per_address_and_cut_off_while_validators_still_connect():
    cluster = Cluster.build(3, limits=LIMITS)
    a, b, late = cluster.nodes
    await asyncio.gather(a.net.start(), b.net.start())
    conns = []
    try:
        key_b = b.key.hex()
        await wait_until(lambda: any(p["key"] == key_b and p["connected"] for p in a.net.peer_status()))
        conns = await open_idle(a.port, "127.0.0.2", 40)
        await wait_until(lambda: a.net.gate.refused == 36)
        assert a.net.gate.unauthenticated == 4  # the per-address cap
        results = await asyncio.gather(*(closed_by_server(r, 0.2) for r, _ in conns))
        assert sum(results) == 36  # closed at once; four are held until the deadline

        await late.net.start()  # a validator from another address still gets its session
        key_a = a.key.hex()
        await wait_until(lambda: any(p["key"] == key_a and p["connected"] for p in late.net.peer_status()))
        marker = b"still-following"
        late.net.send(a.key, marker)
        await wait_until(lambda: (late.key, marker) in a.inbox.consensus)

        # the four held ones never said a word: the deadline closes them
        await wait_until(lambda: a.net.gate.unauthenticated == 0, timeout=10)
        assert a.net.gate.timed_out == 4
        assert all(await asyncio.gather(*(closed_by_server(r, 2.0) for r, _ in conns)))
    finally:
        await close_all(conns)
        await asyncio.gather(a.net.stop(), b.net.stop(), late.net.stop())


async def test_the_global_cap_holds_across_addresses():
    async with Cluster.build(2, limits=LIMITS) as cluster:
        node = cluster.nodes[0]
        conns = []
        try:
            for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
                conns += await open_idle(node.port, source, 4)
            await wait_until(lambda: node.net.gate.refused == 6)
            assert node.net.gate.unauthenticated == 6
            results = await asyncio.gather(*(closed_by_server(r, 0.2) for r, _ in conns))
            assert sum(results) == 6
        finally:
            await close_all(conns)


async def test_a_slow_talker_is_cut_off_at_the_deadline_although_it_keeps_sending():
    async with Cluster.build(2, limits=LIMITS) as cluster:
        node = cluster.nodes[0]
        reader, writer = (await open_idle(node.port, "127.0.0.2", 1))[0]
        request = b"GET /p2p/v1 HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200
        try:
            for i in range(len(request)):  # one byte every 50 ms: never a complete request
                if reader.at_eof():
                    break
                try:
                    writer.write(request[i:i + 1])
                    await writer.drain()
                except (ConnectionResetError, BrokenPipeError):
                    break
                await asyncio.sleep(0.05)
            assert await closed_by_server(reader, 2.0)
            assert node.net.gate.timed_out == 1
        finally:
            writer.close()


async def test_refusals_are_one_summary_line_not_one_per_connection(caplog):
    caplog.set_level(logging.WARNING, logger="cxl.p2p")
    async with Cluster.build(2, limits=LIMITS) as cluster:
        node = cluster.nodes[0]
        conns = []
        try:
            conns = await open_idle(node.port, "127.0.0.2", 200)
            gate = node.net.gate
            await wait_until(lambda: gate.refused + gate.timed_out + gate.unauthenticated == 200, timeout=10)
            assert gate.refused >= 150
        finally:
            await close_all(conns)
    lines = [r for r in caplog.records if r.name == "cxl.p2p" and "refused" in r.getMessage()
             and "over the caps" in r.getMessage()]
    assert 1 <= len(lines) <= 2, [r.getMessage() for r in lines]


@pytest.mark.parametrize("bad", [dict(max_unauthenticated=4, max_unauthenticated_per_host=5),
                                 dict(max_unauthenticated_per_host=0), dict(handshake_timeout_s=0)])
def test_limits_refuse_inconsistent_caps(bad):
    with pytest.raises(ValueError):
        dataclasses.replace(FAST_LIMITS, **bad)


async def test_with_tls_a_connection_that_never_starts_tls_is_held_to_the_same_caps_and_deadline():
    cluster = Cluster.build(3, tls=True, limits=LIMITS)
    a, b, late = cluster.nodes
    await asyncio.gather(a.net.start(), b.net.start())
    conns = []
    try:
        conns = await open_idle(a.port, "127.0.0.2", 20)  # plain TCP, no ClientHello
        await wait_until(lambda: a.net.gate.refused == 16)
        assert a.net.gate.unauthenticated == 4
        await late.net.start()  # a TLS validator still gets its session meanwhile
        key_a = a.key.hex()
        await wait_until(lambda: any(p["key"] == key_a and p["connected"] for p in late.net.peer_status()))
        late.net.send(a.key, b"tls-still-works")
        await wait_until(lambda: (late.key, b"tls-still-works") in a.inbox.consensus)
        await wait_until(lambda: a.net.gate.unauthenticated == 0, timeout=10)
        assert a.net.gate.timed_out == 4
        assert all(await asyncio.gather(*(closed_by_server(r, 2.0) for r, _ in conns)))
    finally:
        await close_all(conns)
        await asyncio.gather(a.net.stop(), b.net.stop(), late.net.stop())
