"""`PeerNetwork`: the node's p2p transport (implements `node.transport.Transport`).

Topology: every validator keeps one persistent outbound WebSocket to every other
validator and sends only on it; it receives on the sessions the others opened to its
own server. Block-sync replies travel back on the session the request came in on.
All public send methods are synchronous and never block: they enqueue and return.

Roles: a node whose key is not in the validator set (a full node) dials the validators
and the extra peers it is given (`set_extra_peers`: listed full nodes with endpoints)
and only asks for blocks and hands over transactions. Servers accept its session when
`inbox.full_node_allowed(key)` says so (the governance node registry, the operator's
`full_node_keys`, former validators), up to `Limits.max_full_node_sessions`, with a block
request budget per session (p2p/full_sessions.py); a consensus frame on such a session
closes it with `CLOSE_NOT_VOTER`. Validators do not dial full nodes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import ssl
import statistics
import time
from typing import Any, Callable, Protocol

import aiohttp
from aiohttp import web

from ledger.crypto import Signer
from ledger.encoding import sha256
from p2p import wire
from p2p.admission import ConnectionGate, TLSGateSite
from p2p.buffers import SeenCache
from p2p.config import Limits
from p2p.errors import HandshakeRefused, PeerUnavailable, ProtocolViolation
from p2p.full_sessions import InboundSession, RequestBudget
from p2p.session import PeerLink, now_ms, set_user_timeout
from p2p.tls import TLSConfig, peer_certificate_key

log = logging.getLogger("cxl.p2p")


class Inbox(Protocol):
    """What the node gives the network for inbound traffic."""

    chain_id: str

    def on_consensus(self, sender_key: bytes, message: bytes) -> None: ...

    def on_txs(self, sender_key: bytes, raw_txs: list[bytes]) -> None: ...

    def serve_blocks(self, from_height: int, limit: int) -> list[tuple[bytes, bytes]]: ...

    # Optional: `full_node_allowed(key) -> bool`, whether a key that is not a validator may
    # hold a full-node session (absent: only validators are admitted); `head_height() ->
    # int`, sent with block answers so a full node knows how far behind it is.
    # Optional: `on_peer_connected(peer_key)`, called each time an outbound session to a
    # peer is (re)established, so the node can re-send what the old session may have lost.


class PeerNetwork:
    def __init__(
        self,
        inbox: Inbox,
        signer: Signer,
        listen_host: str,
        listen_port: int,
        validators: list[dict],
        *,
        tls: TLSConfig | None = None,
        limits: Limits | None = None,
        clock_ms: Callable[[], int] = now_ms,
    ):
        self.inbox = inbox
        self.signer = signer
        self.key = signer.public_key
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.tls = tls
        self.limits = limits or Limits()
        self.clock_ms = clock_ms  # wall clock for handshake times (the node's, so tests can skew it)
        if tls is not None and tls.public_key != self.key:
            shown = tls.public_key.hex() if tls.public_key else "no Ed25519 key"
            raise ValueError(f"the TLS certificate carries {shown}, not this node's key {self.key.hex()}; "
                             "peers pin certificates to node keys, so use TLSConfig.for_signer(node signer) "
                             "or a certificate issued for the node key")
        self.client_ssl: ssl.SSLContext | None = tls.client_context() if tls else None
        self._server_ssl: ssl.SSLContext | None = tls.server_context() if tls else None
        self.client: aiohttp.ClientSession | None = None  # type: ignore[assignment]
        self._runner: web.AppRunner | None = None
        self._running = False
        self._validators: dict[bytes, dict] = {}
        self._links: dict[bytes, PeerLink] = {}
        self._inbound: dict[bytes, web.WebSocketResponse] = {}
        self._sessions: dict[bytes, InboundSession] = {}  # per inbound session: counters, budget
        self._extra: dict[bytes, dict] = {}  # extra peers a full node dials: key -> {key, org, p2p}
        self._handshaking = 0
        # another process with our node key, as peers tell us (see duplicate_session)
        self.duplicate_key: dict | None = None
        self._replaced_at: dict[bytes, float] = {}  # peer key -> when its inbound session was last replaced
        # The deadline runs from accept; the WebSocket handshake's own timeout (from upgrade)
        # closes politely first when the upgrade was quick, the gate aborts everything else.
        self.gate = ConnectionGate(self.limits.max_unauthenticated, self.limits.max_unauthenticated_per_host,
                                   self.limits.handshake_timeout_s + self.limits.close_timeout_s)
        self._background: set[asyncio.Task] = set()
        self._sent_seen = SeenCache(self.limits.seen_capacity)
        self._recv_seen = SeenCache(self.limits.seen_capacity)
        self._batch: list[bytes] = []
        self._batch_bytes = 0
        self._flush_handle: asyncio.TimerHandle | None = None
        self.set_validators(validators)

    @property
    def chain_id(self) -> str:
        return self.inbox.chain_id

    @property
    def bound_port(self) -> int | None:
        """The port actually listened on (useful with listen_port=0)."""
        if self._runner is None:
            return None
        for site in self._runner.sites:
            server = getattr(site, "_server", None)
            if server is not None and server.sockets:
                return server.sockets[0].getsockname()[1]
        return None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._running:
            return
        app = web.Application(client_max_size=1024)
        app.router.add_get(wire.WS_PATH, self._handle_ws)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=self.limits.close_timeout_s)
        await self._runner.setup()
        self.gate.install(self._runner.server)  # caps and a deadline for connections not yet authenticated
        if self._server_ssl is not None:  # TLS under the gate too (p2p.admission)
            site: web.BaseSite = TLSGateSite(self._runner, self.listen_host, self.listen_port, self.gate,
                                             self._server_ssl, self._spawn)
        else:
            site = web.TCPSite(self._runner, self.listen_host, self.listen_port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise OSError(exc.errno, f"p2p: cannot listen on {self.listen_host}:{self.listen_port}: "
                                     f"{exc.strerror} (is another node using this p2p_port?)") from exc
        # sock_connect bounds only the TCP connect (a SYN lost in a partition), so a healed
        # path is redialled quickly; the whole handshake has its own, longer bound
        self.client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                            timeout=aiohttp.ClientTimeout(total=None,
                                                                          sock_connect=self.limits.connect_timeout_s))
        self._running = True
        for link in self._links.values():
            link.start()
        log.info("p2p: listening on %s:%s (%s) as %s", self.listen_host, self.bound_port,
                 "tls" if self.tls else "plain", self.key.hex()[:12])

    async def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        await asyncio.gather(*(link.stop() for link in self._links.values()))
        await asyncio.gather(
            *(ws.close(code=wire.CLOSE_GOING_AWAY, message=b"shutting down") for ws in list(self._inbound.values())),
            return_exceptions=True,
        )
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.client is not None:
            await self.client.close()
            self.client = None  # type: ignore[assignment]

    def _spawn(self, coro: Any) -> None:
        try:
            task = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:  # no loop: nothing is running that would need stopping
            coro.close()
            return
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ----------------------------------------------------------------- membership

    def set_validators(self, validators: list[dict]) -> None:
        """Replace the validator set; these keys may connect as voters and are dialled."""
        table: dict[bytes, dict] = {}
        for entry in validators:
            key = bytes(entry["key"])
            if len(key) != 32:
                raise ValueError(f"validator key must be 32 bytes, got {len(key)}")
            table[key] = entry
        self._validators = table
        self._sync_links()

    def set_extra_peers(self, peers: list[dict]) -> None:
        """Peers dialled besides the validators while this node is not a validator itself
        (other full nodes to follow from): [{key: bytes, p2p: url, org?}]."""
        table: dict[bytes, dict] = {}
        for entry in peers:
            key = bytes(entry["key"])
            if len(key) == 32 and key != self.key and entry.get("p2p"):
                table[key] = entry
        self._extra = table
        self._sync_links()

    @property
    def is_validator(self) -> bool:
        return self.key in self._validators

    def _sync_links(self) -> None:
        peers = {k: v for k, v in self._validators.items() if k != self.key}
        if not self.is_validator:  # a full node also follows other full nodes
            peers = {k: v for k, v in self._extra.items() if k not in peers} | peers
        for key, link in list(self._links.items()):
            entry = peers.get(key)
            if entry is None or str(entry.get("p2p") or "") != link.url:
                del self._links[key]
                self._spawn(link.stop())
        for key, ws in list(self._inbound.items()):
            if self.admission(key) is None:
                self._close_inbound(key, ws, wire.CLOSE_REMOVED, b"no longer a validator or listed full node")
        for key, entry in peers.items():
            link = self._links.get(key)
            if link is None:
                link = PeerLink(self, key, str(entry.get("org", "")), str(entry.get("p2p") or ""))
                self._links[key] = link
                if self._running:
                    link.start()
            else:
                link.org = str(entry.get("org", ""))

    def _close_inbound(self, key: bytes, ws: web.WebSocketResponse, code: int, reason: bytes) -> None:
        if self._inbound.get(key) is ws:
            del self._inbound[key]
            self._sessions.pop(key, None)
        self._spawn(ws.close(code=code, message=reason))

    def _is_peer(self, key: bytes) -> bool:
        return key in self._validators and key != self.key

    def admission(self, key: bytes) -> str | None:
        """What a key may do on a session to us: "validator" (vote, ask for blocks, send
        transactions), "full" (ask for blocks, send transactions: never vote) or None
        (no session at all)."""
        key = bytes(key)
        if key == self.key:
            return None
        if key in self._validators:
            return "validator"
        allowed = getattr(self.inbox, "full_node_allowed", None)
        try:
            if allowed is not None and allowed(key):
                return "full"
        except Exception:  # the node's bug: refuse rather than admit
            log.exception("p2p: inbox full_node_allowed raised")
        return None

    def refresh_admission(self) -> None:
        """Close the sessions of keys no longer admitted (a full node removed from the
        registry); the node calls this after each commit."""
        for key, ws in list(self._inbound.items()):
            if self.admission(key) is None:
                self._close_inbound(key, ws, wire.CLOSE_REMOVED, b"no longer a validator or listed full node")

    # ------------------------------------------------------------------- outbound

    def broadcast(self, message: bytes) -> None:
        """Send an encoded consensus message to every other validator (priority lane)."""
        frame = self._consensus_frame(message)
        if frame is not None:
            for link in self._links.values():
                link.queue.push(frame, priority=True)

    def send(self, peer_key: bytes, message: bytes) -> None:
        link = self._links.get(bytes(peer_key))
        if link is None:
            log.warning("p2p: send to %s dropped: not a peer", bytes(peer_key).hex()[:12])
            return
        frame = self._consensus_frame(message)
        if frame is not None:
            link.queue.push(frame, priority=True)

    def _consensus_frame(self, message: bytes) -> bytes | None:
        frame = wire.encode_frame(wire.ConsensusFrame(bytes(message)))
        if len(frame) > self.limits.max_frame_bytes:
            log.error("p2p: consensus message of %d bytes exceeds the frame limit; not sent", len(message))
            return None
        return frame

    def gossip_txs(self, raw_txs: list[bytes], *, again: bool = False) -> None:
        """Queue transactions for gossip; each hash is sent at most once (bounded memory),
        and one that arrived from a peer is not sent back out (full mesh: its origin sent it
        to everyone). Batches go out after `tx_batch_delay_ms` or when full. `again` sends
        them even so: the consensus core asks for that before it blames a primary for
        leaving a transaction out (the first gossip may not have reached it)."""
        limits = self.limits
        for tx in raw_txs:
            tx = bytes(tx)
            if len(tx) + wire.FRAME_OVERHEAD > limits.max_batch_bytes:
                log.warning("p2p: transaction of %d bytes is above the batch limit; not gossiped", len(tx))
                continue
            if not self._sent_seen.add(sha256(tx)) and not again:
                continue
            if self._batch and self._batch_bytes + len(tx) + wire.FRAME_OVERHEAD > limits.max_batch_bytes:
                self._flush_txs()
            self._batch.append(tx)
            self._batch_bytes += len(tx) + 8
            if len(self._batch) >= limits.max_batch_txs:
                self._flush_txs()
        if self._batch and self._flush_handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._flush_txs()
                return
            self._flush_handle = loop.call_later(limits.tx_batch_delay_ms / 1000, self._flush_txs)

    def _flush_txs(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._batch:
            return
        frame = wire.encode_frame(wire.TxsFrame(tuple(self._batch)))
        self._batch, self._batch_bytes = [], 0
        for link in self._links.values():
            link.queue.push(frame, priority=False)

    async def fetch_blocks(self, from_height: int, peer_key: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        """Blocks with certificates from `from_height` on, at most `limit` (and at most
        `max_blocks_per_request`). With `peer_key=None` tries connected peers in random
        order and returns the first non-empty answer. Raises `PeerUnavailable` when no
        peer could be asked or none answered in time. Blocks are not verified here."""
        limit = min(limit, self.limits.max_blocks_per_request)
        if limit <= 0:
            return []
        if peer_key is not None:
            link = self._links.get(bytes(peer_key))
            if link is None:
                raise PeerUnavailable(f"{bytes(peer_key).hex()[:12]} is not a peer")
            return await link.request_blocks(from_height, limit)
        candidates = [link for link in self._links.values() if link.connected]
        if not candidates:
            raise PeerUnavailable("no connected peer to fetch blocks from")
        random.shuffle(candidates)
        failures: list[str] = []
        for link in candidates:
            try:
                blocks = await link.request_blocks(from_height, limit)
            except PeerUnavailable as exc:
                failures.append(str(exc))
                continue
            if blocks:
                return blocks
        if len(failures) == len(candidates):
            raise PeerUnavailable("; ".join(failures))
        return []

    # ----------------------------------------------------------------- status

    def peer_status(self) -> list[dict]:
        out = []
        for key, link in self._links.items():
            entry = link.status(key in self._inbound)
            entry["role"] = "validator" if key in self._validators else "full"
            out.append(entry)
        return out

    def full_node_status(self) -> list[dict]:
        """The full nodes (not validators) with a session to us, in key order."""
        return [self._sessions[k].status() for k in sorted(self._inbound)
                if k in self._sessions and k not in self._validators]

    def best_peer_height(self) -> int | None:
        """The highest committed height a connected peer reported with its last block
        answer (None: no answer yet)."""
        heights = [link.peer_height for link in self._links.values()
                   if link.connected and link.peer_height is not None]
        return max(heights) if heights else None

    def clock_skew_ms(self) -> int | None:
        """Our clock minus the median of the connected peers' clocks (handshake samples);
        None with no connected peer. The median, so one peer with a wrong clock does not
        make every other node look skewed."""
        offsets = [link.clock_offset_ms for link in self._links.values()
                   if link.connected and link.clock_offset_ms is not None]
        return None if not offsets else -int(statistics.median(offsets))

    # ------------------------------------------------------------ session events

    def peer_connected(self, link: PeerLink) -> None:
        callback = getattr(self.inbox, "on_peer_connected", None)
        if callback is None:
            return
        try:
            callback(link.key)
        except Exception:  # the node's bug, not the peer's: keep the session
            log.exception("p2p: inbox on_peer_connected raised")

    def duplicate_session(self, link: PeerLink) -> None:
        """A peer closed our session because a newer one with our key took over: another
        process is running with this node's key. Say so loudly and tell the node, which
        stops signing (two signers with one key can equivocate and get it slashed)."""
        first = self.duplicate_key is None
        self.duplicate_key = {"peer": link.key.hex(), "since_ms": (self.duplicate_key or {}).get("since_ms")
                              or self.clock_ms(), "seen": (self.duplicate_key or {}).get("seen", 0) + 1}
        log.error("p2p: validator %s replaced our session with a newer one from OUR node key %s: another "
                  "process is running with this key. This node stops signing; stop the other process "
                  "(or give it its own key) and restart this one", link.short, self.key.hex()[:16])
        if not first:
            return
        callback = getattr(self.inbox, "on_duplicate_key", None)
        if callback is not None:
            try:
                callback(link.key)
            except Exception:
                log.exception("p2p: inbox on_duplicate_key raised")

    def note_clock(self, link: PeerLink) -> None:
        """Say so when a peer's clock is far from ours: blocks from a clock more than the
        chain's time_skew_ms ahead are refused (2 s by default), so a node whose clock is
        off loses its vote without anything else failing."""
        offset = link.clock_offset_ms
        if offset is not None and abs(offset) > self.limits.clock_warn_ms:
            log.warning("p2p: clock of peer %s is %+d ms from ours (measured at the handshake, RTT %d ms); "
                        "validators refuse blocks more than time_skew_ms ahead of their clock: check NTP on "
                        "both", link.short, offset, link.clock_rtt_ms or 0)

    # -------------------------------------------------------------------- inbound

    async def _handle_ws(self, request: web.Request) -> web.StreamResponse:
        limits = self.limits
        if not self._running:
            return web.Response(status=503, text="p2p transport is shutting down")
        if self._handshaking >= limits.max_pending_handshakes:
            return web.Response(status=503, text="too many pending p2p handshakes; retry later")
        ws = web.WebSocketResponse(max_msg_size=limits.max_frame_bytes, heartbeat=limits.heartbeat_s,
                                   timeout=limits.close_timeout_s)
        self._handshaking += 1
        try:
            await ws.prepare(request)
            set_user_timeout(ws.get_extra_info("socket"), limits.user_timeout_s)
            async with asyncio.timeout(limits.handshake_timeout_s):
                peer_key = await self._server_handshake(ws)
        except (HandshakeRefused, asyncio.TimeoutError) as exc:
            reason = str(exc) if isinstance(exc, HandshakeRefused) else "handshake timed out"
            log.warning("p2p: refused session from %s: %s", request.remote, reason)
            if not ws.closed:
                await ws.close(code=wire.CLOSE_REFUSED, message=reason.encode()[:120])
            return ws
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
            log.debug("p2p: handshake from %s broke off: %s", request.remote, exc)
            # an unprepared WebSocketResponse makes aiohttp log "Call .prepare() first"
            return ws if ws.prepared else web.Response(status=400, text="websocket upgrade broke off")
        finally:
            self._handshaking -= 1
        self.gate.authenticated(request.protocol)
        old = self._inbound.get(peer_key)
        if old is not None:
            self._spawn(old.close(code=wire.CLOSE_REPLACED, message=b"replaced by a newer session"))
            now, last = time.monotonic(), self._replaced_at.get(peer_key)
            self._replaced_at[peer_key] = now
            if last is not None and now - last < 60:
                log.warning("p2p: sessions from validator %s keep replacing each other: two processes may be "
                            "running with its node key", peer_key.hex()[:16])
        self._inbound[peer_key] = ws
        self._sessions[peer_key] = InboundSession(
            peer_key, str(request.remote), RequestBudget(limits.full_node_requests_per_s, limits.full_node_request_burst))
        link = self._links.get(peer_key)
        if link is not None:
            link.last_seen = time.monotonic()
        try:
            await self._serve_session(ws, peer_key)
        except (ConnectionError, aiohttp.ClientError) as exc:
            log.debug("p2p: session from %s broke off: %s", peer_key.hex()[:12], exc)
        finally:
            if self._inbound.get(peer_key) is ws:
                del self._inbound[peer_key]
                self._sessions.pop(peer_key, None)
        return ws

    async def _server_handshake(self, ws: web.WebSocketResponse) -> bytes:
        tls_key = None
        if self.tls is not None:
            tls_key = peer_certificate_key(ws.get_extra_info("ssl_object"))
            if tls_key is None or self.admission(tls_key) is None:
                raise HandshakeRefused("client TLS certificate key is not a validator or listed full node "
                                       "(not a current validator)")
        challenge = os.urandom(wire.NONCE_SIZE)
        await ws.send_bytes(wire.encode_challenge(self.chain_id, self.key, challenge))
        msg = await ws.receive()
        if msg.type != aiohttp.WSMsgType.BINARY:
            raise HandshakeRefused(f"expected a binary hello, got {msg.type.name}")
        hello = wire.decode_hello(msg.data)
        wire.check_hello(hello, chain_id=self.chain_id, server_key=self.key, issued_challenge=challenge,
                         now_ms=self.clock_ms(), window_ms=self.limits.handshake_window_ms,
                         is_validator=lambda key: self.admission(key) is not None)
        if tls_key is not None and tls_key != hello.client_key:
            raise HandshakeRefused("hello key differs from the client's TLS certificate key")
        if self.admission(hello.client_key) == "full":
            others = sum(1 for k in self._inbound if k not in self._validators and k != hello.client_key)
            if others >= self.limits.max_full_node_sessions:
                raise HandshakeRefused(f"too many full-node sessions (cap {self.limits.max_full_node_sessions}); "
                                       "retry later or follow another node")
        await ws.send_bytes(wire.encode_welcome(self.signer, self.chain_id, hello.client_key,
                                                hello.client_nonce, self.clock_ms()))
        return hello.client_key

    async def _serve_session(self, ws: web.WebSocketResponse, peer: bytes) -> None:
        max_frame = self.limits.max_frame_bytes
        short = peer.hex()[:12]
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.ERROR:
                # aiohttp already closed it (1009 for an oversized frame).
                log.warning("p2p: closed session from %s: %s", short, ws.exception())
                return
            try:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    raise ProtocolViolation(f"unexpected {msg.type.name} message")
                frame = wire.decode_frame(msg.data, max_frame)
                role = self.admission(peer)
                if role is None:  # removed from the validator set (or the registry) meanwhile
                    await ws.close(code=wire.CLOSE_REMOVED, message=b"no longer a validator or listed full node")
                    return
                session = self._sessions.get(peer)
                link = self._links.get(peer)
                if link is not None:
                    link.seen()
                if isinstance(frame, wire.ConsensusFrame):
                    if role != "validator":
                        reason = "consensus messages are not accepted from a full node: it is not a validator"
                        log.warning("p2p: closing session from full node %s: %s", short, reason)
                        await ws.close(code=wire.CLOSE_NOT_VOTER, message=reason.encode()[:120])
                        return
                    self._deliver(self.inbox.on_consensus, peer, frame.message)
                elif isinstance(frame, wire.TxsFrame):
                    if session is not None:
                        session.txs_received += len(frame.txs)
                    self._receive_txs(peer, frame.txs)
                elif isinstance(frame, wire.BlocksRequest):
                    if session is not None:
                        session.block_requests += 1
                        if role == "full":
                            await session.pace()
                    answer, count = self._serve_blocks(frame)
                    if session is not None:
                        session.blocks_served += count
                    await ws.send_bytes(answer)
                else:
                    raise ProtocolViolation(f"{type(frame).__name__} is not allowed from a client")
            except ProtocolViolation as exc:
                log.warning("p2p: closing session from %s: %s", short, exc)
                await ws.close(code=wire.CLOSE_PROTOCOL, message=str(exc).encode()[:120])
                return

    def _receive_txs(self, peer: bytes, txs: tuple[bytes, ...]) -> None:
        fresh = []
        for tx in txs:
            digest = sha256(tx)
            if self._recv_seen.add(digest):
                self._sent_seen.add(digest)
                fresh.append(tx)
        if fresh:
            self._deliver(self.inbox.on_txs, peer, fresh)

    @staticmethod
    def _deliver(callback: Any, peer: bytes, payload: Any) -> None:
        try:
            callback(peer, payload)
        except Exception:  # the node's bug, not the peer's: keep the session
            log.exception("p2p: inbox %s raised", getattr(callback, "__name__", callback))

    def _serve_blocks(self, req: wire.BlocksRequest) -> tuple[bytes, int]:
        limit = min(req.limit, self.limits.max_blocks_per_request)
        items: list = []
        if limit > 0:
            try:
                items = list(self.inbox.serve_blocks(req.from_height, limit))[:limit]
            except Exception:
                log.exception("p2p: serve_blocks(%d, %d) raised", req.from_height, limit)
        budget = self.limits.max_frame_bytes - wire.FRAME_OVERHEAD
        blocks: list[tuple[bytes, bytes]] = []
        for block, cert in items:
            budget -= len(block) + len(cert) + 16
            if budget < 0:
                if not blocks:
                    log.error("p2p: block %d does not fit in one frame; raise max_frame_bytes", req.from_height)
                break
            blocks.append((bytes(block), bytes(cert)))
        head = None
        head_fn = getattr(self.inbox, "head_height", None)
        if head_fn is not None:
            try:
                head = int(head_fn())
            except Exception:
                log.exception("p2p: inbox head_height raised")
        return wire.encode_frame(wire.BlocksResponse(req.request_id, tuple(blocks), head)), len(blocks)
