"""Connection-level limits of the client API: what keeps idle, slow or hostile clients
from taking the server away from everyone else.

aiohttp parses HTTP and runs handlers; this module adds what it does not do on its own:

* a cap on connections per client IP address (`api_max_connections_per_ip`) and in
  total (`max_connections`); beyond the per-address cap a connection is answered 503
  at once and closed; at the total cap the connection that has waited on its client the
  longest (idle, half-sent headers, or a body still arriving) is closed to make room,
  and only when every connection has a request being worked on is the new one refused;
* a header deadline: a request's line and headers must arrive within
  `api_header_timeout_s`, counted from the connection's start or from the first byte
  of a later request on it (slowloris); missing it answers 408 and closes;
* an idle deadline: a keep-alive connection with no request in flight is closed after
  `api_idle_timeout_s` (this also bounds how long a client may take to read an answer);
* an early 413 for a declared `Content-Length` above `max_body_bytes`, before any of the
  body is read (and before `100 Continue`);
* malformed HTTP (oversized headers, bad chunking, conflicting lengths, TLS on this
  port) answered in the API's JSON error shape with one log line, not a traceback;
* `LongPollBudget`: how many `?wait=` long polls may be held at once, in total and per
  IP address, so long polls can never occupy every connection.

Body reads are bounded by `api_body_timeout_s` where the handler reads the body
(`node.api.read_body`, which also marks the connection evictable meanwhile), since only
the handler knows when it wants the body.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, BadStatusLine, LineTooLong
from aiohttp.web_protocol import RequestHandler

# aiohttp's header limits, stated here so docs/operations.md can name them
MAX_LINE_BYTES = 8190        # request line
MAX_FIELD_BYTES = 8190       # one header field
MAX_HEADERS = 128            # header fields per request
LINGER_S = 2.0               # how long unread body bytes are drained after an early answer


@dataclass(frozen=True, slots=True)
class ApiLimits:
    max_body_bytes: int = 4 * 1024 * 1024
    max_connections: int = 512
    max_connections_per_ip: int = 64
    header_timeout_s: float = 10
    idle_timeout_s: float = 30
    body_timeout_s: float = 30
    max_long_polls: int = 256
    max_long_polls_per_ip: int = 32

    @classmethod
    def from_config(cls, cfg) -> "ApiLimits":
        return cls(max_body_bytes=cfg.max_body_bytes, max_connections=cfg.max_connections,
                   max_connections_per_ip=cfg.api_max_connections_per_ip, header_timeout_s=cfg.api_header_timeout_s,
                   idle_timeout_s=cfg.api_idle_timeout_s, body_timeout_s=cfg.api_body_timeout_s,
                   max_long_polls=cfg.api_max_long_polls, max_long_polls_per_ip=cfg.api_max_long_polls_per_ip)


def _error_json(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":")).encode()


def raw_error(status: int, reason: str, code: str, message: str, retry_after: int | None = None) -> bytes:
    """A complete HTTP/1.1 error answer, for when no request object exists (yet)."""
    body = _error_json(code, message)
    extra = f"Retry-After: {retry_after}\r\n" if retry_after is not None else ""
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n{extra}\r\n").encode() + body


def error_response(code: str, message: str, status: int, close: bool = False) -> web.Response:
    resp = web.Response(body=_error_json(code, message), status=status, content_type="application/json")
    if close:
        resp.force_close()
    return resp


def _ip_of(transport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, (tuple, list)) and peer:
        return str(peer[0])
    return "local"  # a Unix socket, or a peer that already went away


class RateLimitedLog:
    """At most `burst` lines per `window_s`; the rest are counted and summed up in one line,
    so a flood of bad requests cannot flood the log."""

    def __init__(self, log: logging.Logger, burst: int = 20, window_s: float = 10.0):
        self.log, self.burst, self.window_s = log, burst, window_s
        self._start, self._count, self._dropped = 0.0, 0, 0

    def info(self, msg: str, *args) -> None:
        now = time.monotonic()
        if now - self._start >= self.window_s:
            if self._dropped:
                self.log.info("API: %d more refused requests in the last %.0f s not logged", self._dropped,
                              self.window_s)
            self._start, self._count, self._dropped = now, 0, 0
        if self._count < self.burst:
            self._count += 1
            self.log.info(msg, *args)
        else:
            self._dropped += 1


class AddressSlots:
    """Slots counted in total and per client address (connections, long polls)."""

    def __init__(self, total: int, per_ip: int):
        self.total_limit, self.per_ip_limit = total, per_ip
        self.total = 0
        self.per_ip: dict[str, int] = {}

    def ip_full(self, ip: str) -> bool:
        return self.per_ip.get(ip, 0) >= self.per_ip_limit

    def total_full(self) -> bool:
        return self.total >= self.total_limit

    def take(self, ip: str) -> None:
        self.total += 1
        self.per_ip[ip] = self.per_ip.get(ip, 0) + 1

    def give_back(self, ip: str) -> None:
        self.total -= 1
        left = self.per_ip.get(ip, 1) - 1
        if left > 0:
            self.per_ip[ip] = left
        else:
            self.per_ip.pop(ip, None)


class ConnectionGuard(AddressSlots):
    """Counts open connections, in total and per IP, for one API server, and knows which
    of them are idle (no request in flight), oldest first."""

    def __init__(self, limits: ApiLimits, log: logging.Logger):
        super().__init__(limits.max_connections, limits.max_connections_per_ip)
        self.limits = limits
        self.log = RateLimitedLog(log)
        self.idle: dict["GuardedHandler", None] = {}  # insertion order: idle the longest first
        self.evicted = 0

    def admit(self, ip: str) -> str | None:
        """Count a new connection in; or return why it is refused (nothing counted).

        At the total limit, the connection idle the longest is closed to make room: idle
        and half-sent connections can never lock real clients out, only requests in
        flight (whose number long polls cannot fill: `LongPollBudget`) hold slots."""
        if self.ip_full(ip):
            return f"at most {self.limits.max_connections_per_ip} API connections from one address ({ip})"
        if self.total_full():
            victim = next(iter(self.idle), None)
            if victim is None:
                return f"the node serves at most {self.limits.max_connections} API connections at once"
            victim.evict()
            self.evicted += 1
        self.take(ip)
        return None

    def release(self, handler: "GuardedHandler", ip: str) -> None:
        self.idle.pop(handler, None)
        self.give_back(ip)


def _describe_bad_http(status: int, exc: BaseException | None, message: str | None) -> tuple[int, str, str]:
    if isinstance(exc, LineTooLong):
        return 431, "headers_too_large", (f"request line or a header is too long ({exc.message}); at most "
                                          f"{MAX_LINE_BYTES} bytes per line and {MAX_HEADERS} headers")
    if isinstance(exc, (BadHttpMethod, BadStatusLine)):
        return 400, "bad_http", ("not an HTTP/1.1 request (this port speaks plain HTTP, not TLS): "
                                 f"{getattr(exc, 'message', '') or type(exc).__name__}")
    if status >= 500:
        return status, "internal", "internal error while reading the request"
    text = getattr(exc, "message", None) or message or (type(exc).__name__ if exc else "malformed request")
    return status, "bad_http", f"malformed HTTP request: {text}"


class GuardedHandler(RequestHandler):
    """aiohttp's protocol with the deadlines and the per-IP accounting above."""

    def __init__(self, manager, *, guard: ConnectionGuard, **kwargs):
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._ip = "local"
        self._admitted = False
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False      # a request is being handled
        self._reading = True    # bytes of a request are due (from the start, a request is)

    # connection lifecycle -------------------------------------------------------------
    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._ip = _ip_of(transport)
        refused = self._guard.admit(self._ip)
        if refused is not None:
            transport.write(raw_error(503, "Service Unavailable", "too_many_connections",
                                      f"{refused}; close idle connections or retry later", retry_after=1))
            self.force_close()
            return
        self._admitted = True
        self._guard.idle[self] = None
        self._arm(self._guard.limits.header_timeout_s, self._header_timeout)

    def connection_lost(self, exc) -> None:
        self._cancel()
        self._release()
        super().connection_lost(exc)

    def _release(self) -> None:
        if self._admitted:
            self._admitted = False
            self._guard.release(self, self._ip)

    def evict(self) -> None:
        """Closed to make room for a new connection (this one was waiting on its client:
        idle, sending headers, or sending a body)."""
        self._cancel()
        self._release()  # counted out now: the new connection takes this slot
        if self.transport is None:
            return
        if self._reading or self._busy:  # a request had begun (or was due): say why it is not served
            self.transport.write(raw_error(503, "Service Unavailable", "too_many_connections",
                                           "the node is at its connection limit and closed this connection, "
                                           "idle the longest, for another client; retry", retry_after=1))
        self.force_close()

    def data_received(self, data: bytes) -> None:
        if data and not self._busy and not self._reading and self._admitted:
            self._reading = True  # a next request begins: its headers are due
            self._arm(self._guard.limits.header_timeout_s, self._header_timeout)
        super().data_received(data)

    # called around each request by GuardedServer ----------------------------------------
    def request_started(self) -> None:
        self._busy = True
        self._guard.idle.pop(self, None)
        self._cancel()  # the handler's own bounds apply now (body timeout, ?wait= cap)

    def body_wait(self, waiting: bool) -> None:
        """While a handler waits for body bytes the connection waits on its client, as an
        idle one does: evictable (after every connection idle since before it)."""
        if not self._admitted:
            return
        if waiting:
            self._guard.idle[self] = None
        else:
            self._guard.idle.pop(self, None)

    def request_finished(self) -> None:
        self._busy = False
        self._reading = False
        if self._admitted:
            self._guard.idle[self] = None
            self._arm(self._guard.limits.idle_timeout_s, self._idle_timeout)

    # deadlines --------------------------------------------------------------------------
    def _arm(self, delay: float, callback) -> None:
        self._cancel()
        if self.transport is not None:
            self._timer = self._loop.call_later(delay, callback)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _header_timeout(self) -> None:
        self._timer = None
        if self._busy or self.transport is None:
            return
        limit = self._guard.limits.header_timeout_s
        self._guard.log.info("API: closed a connection from %s: no complete request headers within %g s",
                             self._ip, limit)
        self.transport.write(raw_error(408, "Request Timeout", "header_timeout",
                                       f"request headers not received within {limit:g} s"))
        self.force_close()

    def _idle_timeout(self) -> None:
        self._timer = None
        if not self._busy and self.transport is not None:
            self.force_close()

    # malformed HTTP ---------------------------------------------------------------------
    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """aiohttp answers unparsable requests here: plain text and a logged traceback.
        Answer in the API's error shape and log one line instead."""
        if request.writer.output_size > 0:
            raise ConnectionError("the response has started; cannot send an error answer")
        status, code, text = _describe_bad_http(status, exc, message)
        self._guard.log.info("API: refused a malformed request from %s: %d %s: %s", self._ip, status, code, text)
        return error_response(code, text, status, close=True)


class GuardedServer(web.Server):
    """The aiohttp low-level server, making `GuardedHandler`s and telling each one when a
    request starts and ends; refuses a declared body above the limit before reading it."""

    guard: ConnectionGuard

    def adopt(self, guard: ConnectionGuard) -> None:
        self.guard = guard
        inner = self.request_handler
        limit = guard.limits.max_body_bytes

        async def guarded(request: web.BaseRequest) -> web.StreamResponse:
            proto = request.protocol
            started = isinstance(proto, GuardedHandler)
            if started:
                proto.request_started()
            try:
                length = request.content_length
                if length is not None and length > limit:
                    return error_response("body_too_large", f"request body of {length} bytes declared, above the "
                                          f"limit of {limit} bytes (send fewer transactions per request)", 413,
                                          close=True)
                return await inner(request)
            finally:
                if started:
                    proto.request_finished()

        self.request_handler = guarded

    def __call__(self) -> GuardedHandler:
        return GuardedHandler(self, loop=self._loop, guard=self.guard, **self._kwargs)


class GuardedAppRunner(web.AppRunner):
    """`web.AppRunner` whose server is a `GuardedServer` (same app lifecycle)."""

    def __init__(self, app: web.Application, guard: ConnectionGuard, **kwargs):
        super().__init__(app, **kwargs)
        self._guard = guard

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = GuardedServer  # same state; adds the guarded protocol factory
        server.adopt(self._guard)  # type: ignore[attr-defined]
        return server


async def serve(app: web.Application, host: str, port: int, limits: ApiLimits,
                log: logging.Logger) -> tuple[web.AppRunner, int]:
    guard = ConnectionGuard(limits, log)
    runner = GuardedAppRunner(
        app, guard, access_log=None, handle_signals=False, shutdown_timeout=5.0,
        # aiohttp's own idle close is only a backstop: ours fire first, and the header one answers 408
        keepalive_timeout=limits.idle_timeout_s + limits.header_timeout_s + 5, max_line_size=MAX_LINE_BYTES, max_field_size=MAX_FIELD_BYTES,
        max_headers=MAX_HEADERS, lingering_time=LINGER_S,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    sock = site._server.sockets[0]  # type: ignore[union-attr]
    return runner, sock.getsockname()[1]


class LongPollBudget(AddressSlots):
    """How many `?wait=` long polls are held at once, in total and per client address."""

    def acquire(self, ip: str) -> bool:
        if self.total_full() or self.ip_full(ip):
            return False
        self.take(ip)
        return True

    def release(self, ip: str) -> None:
        self.give_back(ip)
