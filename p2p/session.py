"""One peer (a validator, or for a full node another full node) as seen from this node: its outbound session, queue and counters.

`PeerLink` keeps one persistent WebSocket *to* the peer: dial, handshake (pinning the
peer's node key), then a sender task drains the outbound queue while the reader takes
block-sync responses. When the session ends for any reason it redials with capped,
jittered exponential backoff. Frames the peer sends *to us* arrive on the peer's own
outbound session (our server side), handled by `PeerNetwork`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from typing import TYPE_CHECKING

import aiohttp

from p2p import wire
from p2p.buffers import OutboundQueue
from p2p.errors import HandshakeRefused, P2PError, PeerUnavailable, ProtocolViolation
from p2p.tls import peer_certificate_key

if TYPE_CHECKING:
    from p2p.network import PeerNetwork

log = logging.getLogger("cxl.p2p")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def set_user_timeout(sock: socket.socket | None, seconds: float) -> None:
    """Have the kernel drop the connection when sent data stays unacknowledged for
    `seconds` (Linux TCP_USER_TIMEOUT): a peer behind a partition is then noticed even
    while we keep sending, instead of after ~15 minutes of retransmissions."""
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if sock is None or option is None or seconds <= 0:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, int(seconds * 1000))
    except OSError as exc:  # not TCP (a test double), or not supported here
        log.debug("p2p: cannot set TCP_USER_TIMEOUT: %s", exc)


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff, capped, with jitter in [50%, 100%] of the step."""
    step = min(cap, base * (2 ** min(attempt, 30)))
    return step * (rng or random).uniform(0.5, 1.0)


class PeerLink:
    def __init__(self, net: "PeerNetwork", key: bytes, org: str, url: str):
        self.net = net
        self.key = key
        self.org = org
        self.url = url
        limits = net.limits
        self.queue = OutboundQueue(limits.max_queue_frames, limits.max_queue_bytes)
        self.connected = False
        self.sent = 0
        self.received = 0
        self.reconnects = 0
        self.replaced_by_other = False  # the peer said a newer session with our key took over
        self.connects = 0
        self.last_seen: float | None = None  # time.monotonic() of the last frame from this peer
        self.last_error = ""
        # peer's clock minus ours, in ms, measured at the last handshake (None: never
        # connected). Round-trip corrected: accurate to about half the handshake's RTT.
        self.clock_offset_ms: int | None = None
        self.clock_rtt_ms: int | None = None
        self.peer_height: int | None = None  # the peer's head height with its last block answer
        self._task: asyncio.Task | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._pending: dict[int, tuple[asyncio.Future, int]] = {}
        self._rx_at = 0.0  # time.monotonic() of the last message on our outbound session
        self._next_request = 1

    @property
    def short(self) -> str:
        return self.key.hex()[:12]

    @property
    def ws_url(self) -> str:
        url = self.url.rstrip("/")
        if self.net.tls is not None and url.startswith("http://"):
            url = "https://" + url[len("http://"):]
        return url + wire.WS_PATH

    def seen(self) -> None:
        self.received += 1
        self.last_seen = time.monotonic()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if not self.url:
            log.warning("p2p: validator %s has no p2p URL; accepting its sessions, not dialling it", self.short)
            return
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"p2p-link-{self.short}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._fail_pending("link stopped")

    async def _run(self) -> None:
        limits = self.net.limits
        attempt = 0
        while True:
            established = False
            started, connects = time.monotonic(), self.connects
            try:
                established = await self._session()
            except asyncio.CancelledError:
                raise
            except HandshakeRefused as exc:
                self.last_error = str(exc)
                log.warning("p2p: handshake with %s (%s) failed: %s", self.short, self.url, exc)
            except (P2PError, aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                # why an established session ended is worth a line; failed redials are not
                log.log(logging.INFO if self.connects > connects else logging.DEBUG,
                        "p2p: session to %s (%s) ended: %s", self.short, self.url, self.last_error)
            except Exception:  # a bug here must not kill the link forever
                log.exception("p2p: unexpected error in session to %s", self.short)
            if established:
                attempt = 0
            if self.replaced_by_other:
                self.replaced_by_other = False
                await asyncio.sleep(limits.duplicate_backoff_s)
            # the backoff spaces the *starts* of attempts: a dial that already hung for the
            # connect timeout (a partition) is retried at once, so a healed path is found
            # within one connect timeout; a refused one waits the backoff
            delay = backoff_delay(attempt, limits.backoff_base_s, limits.backoff_cap_s)
            await asyncio.sleep(max(0.0, delay - (time.monotonic() - started)) if not established else delay)
            attempt += 1

    # -------------------------------------------------------------------- session

    async def _session(self) -> bool:
        """Dial, authenticate, run until the session ends. True if it was established."""
        net, limits = self.net, self.net.limits
        ws = None
        try:
            async with asyncio.timeout(limits.connect_timeout_s + limits.handshake_timeout_s):
                ws = await net.client.ws_connect(
                    self.ws_url,
                    ssl=net.client_ssl if net.client_ssl is not None else True,
                    max_msg_size=limits.max_frame_bytes,
                    autoping=False,  # pongs are read by _read_loop: they are our sign of life
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=limits.close_timeout_s),
                )
                self._ws = ws
                set_user_timeout(ws.get_extra_info("socket"), limits.user_timeout_s)
                await self._handshake(ws)
            self.connected = True
            self.connects += 1
            if self.connects > 1:
                self.reconnects += 1
            self.last_seen = self._rx_at = time.monotonic()
            self.last_error = ""
            log.info("p2p: connected to %s (%s), its clock %+d ms from ours", self.short, self.url,
                     self.clock_offset_ms or 0)
            net.peer_connected(self)
            tasks = {asyncio.create_task(self._send_loop(ws)), asyncio.create_task(self._read_loop(ws)),
                     asyncio.create_task(self._keepalive(ws))}
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            if ws.closed and ws.close_code is not None:
                self.last_error = f"closed by the peer or the network (code {ws.close_code})"
                log.info("p2p: session to %s ended: %s", self.short, self.last_error)
                if ws.close_code == wire.CLOSE_REPLACED:
                    # we open one session at a time to a peer: a newer one with our key is
                    # another process's
                    self.replaced_by_other = True
                    net.duplicate_session(self)
            return True
        finally:
            if self.connected:
                log.info("p2p: disconnected from %s (%s)", self.short, self.url)
            self.connected = False
            self._ws = None
            self._fail_pending("session closed")
            if ws is not None and not ws.closed:
                await ws.close(code=wire.CLOSE_GOING_AWAY)

    async def _handshake(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        net = self.net
        if net.tls is not None:
            tls_key = peer_certificate_key(ws.get_extra_info("ssl_object"))
            if tls_key != self.key:
                got = tls_key.hex()[:16] + "…" if tls_key else "none"
                raise HandshakeRefused(f"TLS certificate key {got} is not the pinned node key")
        msg = await ws.receive()
        self._expect_binary(ws, msg, "challenge")
        challenge = wire.decode_challenge(msg.data)
        if challenge.version != wire.VERSION:
            raise HandshakeRefused(f"peer speaks p2p version {challenge.version}, we speak {wire.VERSION}")
        if challenge.chain_id != net.chain_id:
            raise HandshakeRefused(f"peer is on chain {challenge.chain_id!r}, we are on {net.chain_id!r}")
        if challenge.server_key != self.key:
            raise HandshakeRefused("peer announced a different node key than the validator set lists")
        nonce = os.urandom(wire.NONCE_SIZE)
        sent_ms = net.clock_ms()
        await ws.send_bytes(wire.encode_hello(net.signer, net.chain_id, self.key, challenge.challenge,
                                              sent_ms, nonce))
        msg = await ws.receive()
        received_ms = net.clock_ms()
        self._expect_binary(ws, msg, "welcome")
        welcome = wire.decode_welcome(msg.data)
        wire.check_welcome(welcome, chain_id=net.chain_id, server_key=self.key, client_key=net.key,
                           client_nonce=nonce, now_ms=received_ms, window_ms=net.limits.handshake_window_ms)
        # The peer stamped the welcome between our hello and its arrival: compare its time
        # with the midpoint of that round trip (NTP's estimate, with one sample).
        self.clock_rtt_ms = max(0, received_ms - sent_ms)
        self.clock_offset_ms = welcome.time_ms - (sent_ms + received_ms) // 2
        net.note_clock(self)

    @staticmethod
    def _expect_binary(ws: aiohttp.ClientWebSocketResponse, msg: aiohttp.WSMessage, what: str) -> None:
        if msg.type == aiohttp.WSMsgType.BINARY:
            return
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            raise HandshakeRefused(f"peer closed the session ({ws.close_code}: {msg.extra or ''})")
        raise HandshakeRefused(f"expected a binary {what}, got {msg.type.name}")

    async def _send_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        queue = self.queue
        while True:
            await queue.wait()
            frame = queue.pop()
            if frame is not None:
                await ws.send_bytes(frame)
                self.sent += 1

    async def _keepalive(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Ping every ping_interval_s; return (ending the session) once nothing came from
        the peer for dead_after_s: a partition or a dead host closes nothing by itself.
        A ping waits when the send buffer is full, so it runs beside the check, one at a
        time, rather than holding it up."""
        limits = self.net.limits
        ping: asyncio.Task | None = None
        try:
            while True:
                await asyncio.sleep(limits.ping_interval_s)
                silent = time.monotonic() - max(self._rx_at, self.last_seen or 0.0)
                if silent > limits.dead_after_s:
                    self.last_error = f"nothing from the peer for {silent:.1f} s"
                    log.info("p2p: session to %s is dead: %s", self.short, self.last_error)
                    return
                if ping is not None and ping.done() and not ping.cancelled() and ping.exception() is not None:
                    self.last_error = f"ping failed: {ping.exception()!r}"
                    log.info("p2p: session to %s ended: %s", self.short, self.last_error)
                    return
                if ping is None or ping.done():
                    ping = asyncio.ensure_future(ws.ping())
        finally:
            if ping is not None and not ping.done():
                ping.cancel()

    async def _read_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        max_frame = self.net.limits.max_frame_bytes
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.ERROR:
                log.warning("p2p: session to %s failed: %s", self.short, ws.exception())
                return
            self._rx_at = time.monotonic()
            if msg.type == aiohttp.WSMsgType.PONG:
                continue
            if msg.type == aiohttp.WSMsgType.PING:
                await ws.pong(msg.data)
                continue
            try:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    raise ProtocolViolation(f"unexpected {msg.type.name} message")
                frame = wire.decode_frame(msg.data, max_frame)
                self.seen()
                if not isinstance(frame, wire.BlocksResponse):
                    raise ProtocolViolation(f"{type(frame).__name__} is not allowed from a server")
                self._resolve(frame)
            except ProtocolViolation as exc:
                log.warning("p2p: closing session to %s: %s", self.short, exc)
                await ws.close(code=wire.CLOSE_PROTOCOL, message=str(exc).encode()[:120])
                return

    # ----------------------------------------------------------------- block sync

    async def request_blocks(self, from_height: int, limit: int) -> list[tuple[bytes, bytes]]:
        if not self.connected:
            raise PeerUnavailable(f"no session to peer {self.short}")
        rid = self._next_request
        self._next_request += 1
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending[rid] = (future, limit)
        self.queue.push(wire.encode_frame(wire.BlocksRequest(rid, from_height, limit)), priority=True)
        try:
            return await asyncio.wait_for(future, self.net.limits.fetch_timeout_s)
        except asyncio.TimeoutError:
            raise PeerUnavailable(
                f"peer {self.short} did not answer a block request within {self.net.limits.fetch_timeout_s}s"
            ) from None
        finally:
            self._pending.pop(rid, None)

    def _resolve(self, frame: wire.BlocksResponse) -> None:
        entry = self._pending.get(frame.request_id)
        if entry is None:
            log.debug("p2p: late or unknown block response %d from %s", frame.request_id, self.short)
            return
        future, limit = entry
        if frame.head_height is not None:
            self.peer_height = frame.head_height
        if len(frame.blocks) > limit:
            raise ProtocolViolation(f"block response has {len(frame.blocks)} blocks, asked for {limit}")
        if not future.done():
            future.set_result(list(frame.blocks))

    def _fail_pending(self, reason: str) -> None:
        for future, _ in self._pending.values():
            if not future.done():
                future.set_exception(PeerUnavailable(f"peer {self.short}: {reason}"))
        self._pending.clear()

    def status(self, inbound: bool) -> dict:
        return {
            "key": self.key.hex(),
            "org": self.org,
            "url": self.url,
            "connected": self.connected,
            "clock_offset_ms": self.clock_offset_ms,
            "inbound": inbound,
            "last_seen_ms": None if self.last_seen is None else int((time.monotonic() - self.last_seen) * 1000),
            "sent": self.sent,
            "received": self.received,
            "dropped": self.queue.dropped,
            "queued": len(self.queue),
            "reconnects": self.reconnects,
            "height": self.peer_height,
            "last_error": self.last_error,
        }
