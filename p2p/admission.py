"""Admission of inbound TCP connections to the p2p port, before they prove who they are.

Only validators may hold a session, but anyone can open a TCP connection. Without a cap
and a deadline, 20,000 idle connections used up a validator's file descriptors: its
API timed out, it stopped following the chain and asyncio's accept loop logged
`Too many open files` without pause. So every accepted connection counts as
*unauthenticated* until its p2p handshake succeeds, and

* at most `max_unauthenticated` of them are open at once, at most
  `max_unauthenticated_per_host` from one remote address (so one host cannot take the
  slots the other validators need); a connection over a cap is closed at once;
* one that has not finished the handshake `deadline_s` after it was accepted is closed
  (slow or silent clients included: the clock starts at accept, not at upgrade).
  `PeerNetwork` uses `handshake_timeout_s + close_timeout_s`: a client that upgraded
  quickly hears the handshake's own polite "timed out" close first.

Refusals are counted and logged as one summary line per `log_interval_s`, never one
line per connection. The gate hooks aiohttp's `web.Server.connection_made` /
`connection_lost`, which see every connection of the server once it speaks HTTP. With
TLS those fire only after the TLS handshake, so `TLSGateSite` accepts plain TCP itself,
admits the connection through the gate at accept, and upgrades it with
`loop.start_tls` (bounded by the same deadline) before handing it to aiohttp: a client
that connects and never starts TLS is held to the same caps and deadline.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass
from typing import Any, Callable

from aiohttp import web

log = logging.getLogger("cxl.p2p")


@dataclass(slots=True)
class _Pending:
    host: str
    transport: Any
    timer: asyncio.TimerHandle | None


class ConnectionGate:
    def __init__(self, max_unauthenticated: int, max_per_host: int, deadline_s: float,
                 *, log_interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.max_unauthenticated = max_unauthenticated
        self.max_per_host = max_per_host
        self.deadline_s = deadline_s
        self.log_interval_s = log_interval_s
        self.clock = clock
        self._pending: dict[Any, _Pending] = {}  # aiohttp RequestHandler -> its connection
        self._per_host: dict[str, int] = {}
        self.refused = 0        # closed at accept: over a cap (totals, for status and tests)
        self.timed_out = 0      # closed: no handshake within the deadline
        self._unlogged = 0
        self._last_log = float("-inf")

    # -- wiring -------------------------------------------------------------------------------
    def install(self, server: Any) -> None:
        """Hook a `web.Server` (an AppRunner's `.server`) so it reports every connection."""
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler, transport) -> None:
            made(handler, transport)
            self.opened(handler, transport)

        def connection_lost(handler, exc=None) -> None:
            self.closed(handler)
            lost(handler, exc)

        server.connection_made = connection_made
        server.connection_lost = connection_lost

    # -- events -------------------------------------------------------------------------------
    def opened(self, handler: Any, transport: Any) -> None:
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, (tuple, list)) and peer else "?"
        if len(self._pending) >= self.max_unauthenticated or self._per_host.get(host, 0) >= self.max_per_host:
            self.refused += 1
            self._note_refusal(host)
            transport.abort()  # free the descriptor now; nothing was said on it
            return
        timer = None
        try:
            timer = asyncio.get_running_loop().call_later(self.deadline_s, self._expire, handler)
        except RuntimeError:  # no running loop (cannot happen inside a server): no deadline
            pass
        self._pending[handler] = _Pending(host, transport, timer)
        self._per_host[host] = self._per_host.get(host, 0) + 1

    def authenticated(self, handler: Any) -> None:
        """The connection's peer proved it is a validator: it no longer counts, no deadline."""
        self._forget(handler)

    def closed(self, handler: Any) -> None:
        self._forget(handler)

    def _expire(self, handler: Any) -> None:
        entry = self._pending.get(handler)
        if entry is None:
            return
        self._forget(handler)
        self.timed_out += 1
        log.debug("p2p: closed a connection from %s: no handshake within %.1fs", entry.host, self.deadline_s)
        entry.transport.abort()

    def _forget(self, handler: Any) -> None:
        entry = self._pending.pop(handler, None)
        if entry is None:
            return
        if entry.timer is not None:
            entry.timer.cancel()
        left = self._per_host[entry.host] - 1
        if left:
            self._per_host[entry.host] = left
        else:
            del self._per_host[entry.host]

    def _note_refusal(self, host: str) -> None:
        self._unlogged += 1
        now = self.clock()
        if now - self._last_log >= self.log_interval_s:
            log.warning("p2p: refused %d connection(s) over the caps (latest from %s; %d unauthenticated open, "
                        "caps %d in all and %d per address)", self._unlogged, host, len(self._pending),
                        self.max_unauthenticated, self.max_per_host)
            self._unlogged = 0
            self._last_log = now

    # -- reads --------------------------------------------------------------------------------
    @property
    def unauthenticated(self) -> int:
        return len(self._pending)

    def stats(self) -> dict:
        return {"unauthenticated": len(self._pending), "refused": self.refused, "timed_out": self.timed_out}


class _TLSAcceptor(asyncio.Protocol):
    """The first protocol of a TLS connection: admitted (or refused) by the gate at
    accept, then upgraded to TLS and handed to an aiohttp request handler."""

    def __init__(self, gate: ConnectionGate, server: Any, context: ssl.SSLContext, spawn: Callable):
        self.gate, self.server, self.context, self.spawn = gate, server, context, spawn
        self.transport: asyncio.Transport | None = None
        self.upgraded = False

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport
        self.gate.opened(self, transport)
        if transport.is_closing():  # refused: over a cap
            return
        transport.pause_reading()  # the ClientHello waits for start_tls
        self.spawn(self._upgrade())

    async def _upgrade(self) -> None:
        transport = self.transport
        assert transport is not None
        handler = self.server()  # aiohttp's RequestHandler
        try:
            tls = await asyncio.get_running_loop().start_tls(
                transport, handler, self.context, server_side=True, ssl_handshake_timeout=self.gate.deadline_s)
        except (OSError, ssl.SSLError, asyncio.TimeoutError, ConnectionError, RuntimeError) as exc:
            log.debug("p2p: TLS handshake failed: %s", exc)
            transport.abort()
            self.gate.closed(self)
            return
        self.upgraded = True
        self.gate.closed(self)  # from here the server hooks count it (handler.connection_made)
        handler.connection_made(tls)

    def connection_lost(self, exc) -> None:  # before the upgrade only: start_tls swaps protocols
        if not self.upgraded:
            self.gate.closed(self)

    def data_received(self, data: bytes) -> None:  # reading is paused until start_tls
        pass


class TLSGateSite(web.BaseSite):
    """A TCP site whose TLS handshake happens under the gate's caps and deadline."""

    __slots__ = ("_host", "_port", "_gate", "_context", "_spawn")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, gate: ConnectionGate,
                 context: ssl.SSLContext, spawn: Callable):
        super().__init__(runner)
        self._host, self._port, self._gate, self._context, self._spawn = host, port, gate, context, spawn

    @property
    def name(self) -> str:
        return f"https://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _TLSAcceptor(self._gate, server, self._context, self._spawn),
            self._host, self._port, backlog=self._backlog)
