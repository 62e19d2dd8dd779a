"""An upgrade to the p2p WebSocket that breaks off while the server answers it (issue 14
item 7) is logged as one debug line, never aiohttp's `RuntimeError: Call .prepare() first`."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from p2p import wire
from p2p.testing import Cluster

UPGRADE = (b"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
           b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")


async def test_an_upgrade_that_breaks_off_in_prepare_logs_no_traceback(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="cxl.p2p")  # an earlier test may have set "cxl" to info
    cluster = Cluster.build(1)
    node = cluster.nodes[0]
    await cluster.start()
    try:
        async def broken_prepare(self, request):  # the client went away while we answered it
            raise ConnectionResetError("Cannot write to closing transport")
        monkeypatch.setattr(web.WebSocketResponse, "prepare", broken_prepare)
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        writer.write(UPGRADE.replace(b"{path}", wire.WS_PATH.encode()))
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(64), 5)
        writer.close()
        await asyncio.sleep(0.2)
    finally:
        await cluster.stop()
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert not [r for r in caplog.records if r.exc_info or r.levelname in ("ERROR", "CRITICAL")], \
        [r.getMessage() for r in caplog.records if r.exc_info or r.levelname in ("ERROR", "CRITICAL")]
    assert any("broke off" in r.getMessage() for r in caplog.records)
