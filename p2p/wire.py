"""The p2p wire format: handshake messages and session frames. Pure: no sockets, no clock.

Every value on the wire is a canonical msgpack encoding (`ledger.encoding.encode`) and
every value read from the wire goes through the strict `decode`. Signed payloads use
`signing_bytes(DOMAIN_P2P, chain_id, payload)`, so a handshake signature can never be
replayed as a transaction or a consensus vote, nor on another chain.

Handshake (server speaks first, on a fresh WebSocket):

    S -> C  ["challenge", VERSION, chain_id, server_key, challenge]
    C -> S  ["hello", client_key, challenge, time_ms, client_nonce, sig_c]
            sig_c over ["hello", client_key, server_key, challenge, time_ms]
    S -> C  ["welcome", time_ms, sig_s]
            sig_s over ["welcome", server_key, client_key, client_nonce, time_ms]

After that each binary WebSocket message is one frame, ``[kind, body]``; see `Frame`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

from ledger.crypto import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, Signer, verify
from ledger.encoding import DOMAIN_P2P, decode, encode, expect, signing_bytes
from ledger.errors import EncodingError
from p2p.errors import HandshakeRefused, ProtocolViolation

VERSION = 1
WS_PATH = "/p2p/v1/ws"
NONCE_SIZE = 32
MAX_HANDSHAKE_BYTES = 1024
# Fixed by the protocol (not per-node config) so two honest nodes never disagree on it.
MAX_TXS_PER_FRAME = 4096
MAX_BLOCKS_PER_RESPONSE = 1024
# Per-frame overhead allowance when packing a response under the frame limit.
FRAME_OVERHEAD = 64

# WebSocket close codes (4000-4999 is the private-use range).
CLOSE_REFUSED = 4001  # handshake failed: not a validator, bad signature, stale, replayed
CLOSE_PROTOCOL = 4002  # malformed / unexpected frame
CLOSE_REPLACED = 4003  # a newer session from the same key took over
CLOSE_REMOVED = 4004  # the key left the validator set (and is no listed full node)
CLOSE_NOT_VOTER = 4005  # a consensus frame on a full-node session: full nodes never vote
CLOSE_TOO_BIG = 1009  # frame above the size limit (standard code; aiohttp uses it too)
CLOSE_GOING_AWAY = 1001  # node shutting down


# ----------------------------------------------------------------------------- frames


@dataclass(frozen=True, slots=True)
class ConsensusFrame:
    """An encoded consensus message; the inbox checks its signature."""

    message: bytes


@dataclass(frozen=True, slots=True)
class TxsFrame:
    """A batch of raw signed transactions."""

    txs: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class BlocksRequest:
    request_id: int
    from_height: int
    limit: int


@dataclass(frozen=True, slots=True)
class BlocksResponse:
    request_id: int
    blocks: tuple[tuple[bytes, bytes], ...]  # (block_raw, cert_raw)
    # the server's committed height when it answered (a full node's "blocks behind");
    # None only from a server that does not send it (the two-field form)
    head_height: int | None = None


Frame = Union[ConsensusFrame, TxsFrame, BlocksRequest, BlocksResponse]

KIND_CONSENSUS = "consensus"
KIND_TXS = "txs"
KIND_BLOCKS_REQ = "blocks_req"
KIND_BLOCKS_RESP = "blocks_resp"


def encode_frame(frame: Frame) -> bytes:
    if isinstance(frame, ConsensusFrame):
        return encode([KIND_CONSENSUS, frame.message])
    if isinstance(frame, TxsFrame):
        return encode([KIND_TXS, list(frame.txs)])
    if isinstance(frame, BlocksRequest):
        return encode([KIND_BLOCKS_REQ, [frame.request_id, frame.from_height, frame.limit]])
    if isinstance(frame, BlocksResponse):
        body = [frame.request_id, [list(b) for b in frame.blocks]]
        if frame.head_height is not None:
            body.append(frame.head_height)
        return encode([KIND_BLOCKS_RESP, body])
    raise TypeError(f"not a frame: {frame!r}")


def _uint(value: object, what: str) -> int:
    expect(value, int, what)
    if value < 0:
        raise EncodingError(f"{what}: negative")
    return value  # type: ignore[return-value]


def _list(value: object, length: int, what: str) -> list:
    expect(value, list, what)
    if len(value) != length:  # type: ignore[arg-type]
        raise EncodingError(f"{what}: expected {length} fields")
    return value  # type: ignore[return-value]


def decode_frame(data: bytes, max_size: int) -> Frame:
    """Parse one session frame; anything unexpected raises `ProtocolViolation`."""
    if len(data) > max_size:
        raise ProtocolViolation(f"frame of {len(data)} bytes exceeds {max_size}")
    try:
        kind, body = _list(decode(data, max_size=max_size), 2, "frame")
        expect(kind, str, "frame kind")
        if kind == KIND_CONSENSUS:
            return ConsensusFrame(expect(body, bytes, "consensus message"))
        if kind == KIND_TXS:
            expect(body, list, "txs")
            if not body or len(body) > MAX_TXS_PER_FRAME:
                raise EncodingError(f"txs: batch of {len(body)}, allowed 1..{MAX_TXS_PER_FRAME}")
            for tx in body:
                expect(tx, bytes, "tx")
            return TxsFrame(tuple(body))
        if kind == KIND_BLOCKS_REQ:
            rid, start, limit = _list(body, 3, "blocks_req")
            return BlocksRequest(_uint(rid, "request id"), _uint(start, "from"), _uint(limit, "limit"))
        if kind == KIND_BLOCKS_RESP:
            expect(body, list, "blocks_resp")
            if len(body) not in (2, 3):
                raise EncodingError("blocks_resp: expected 2 or 3 fields")
            rid, items = body[0], body[1]
            head = _uint(body[2], "head height") if len(body) == 3 else None
            expect(items, list, "blocks")
            if len(items) > MAX_BLOCKS_PER_RESPONSE:
                raise EncodingError("blocks_resp: too many blocks")
            pairs = []
            for item in items:
                block, cert = _list(item, 2, "block entry")
                pairs.append((expect(block, bytes, "block"), expect(cert, bytes, "certificate")))
            return BlocksResponse(_uint(rid, "request id"), tuple(pairs), head)
        raise EncodingError(f"unknown frame kind {kind!r}")
    except EncodingError as exc:
        raise ProtocolViolation(f"malformed frame: {exc.message}") from None


# -------------------------------------------------------------------------- handshake


@dataclass(frozen=True, slots=True)
class Challenge:
    version: int
    chain_id: str
    server_key: bytes
    challenge: bytes


@dataclass(frozen=True, slots=True)
class Hello:
    client_key: bytes
    challenge: bytes
    time_ms: int
    client_nonce: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class Welcome:
    time_ms: int
    signature: bytes


def _fixed(value: object, size: int, what: str) -> bytes:
    expect(value, bytes, what)
    if len(value) != size:  # type: ignore[arg-type]
        raise EncodingError(f"{what}: expected {size} bytes")
    return value  # type: ignore[return-value]


def _decode_handshake(data: object, tag: str, length: int) -> list:
    if not isinstance(data, (bytes, bytearray)):
        raise HandshakeRefused(f"expected a binary {tag} message")
    if len(data) > MAX_HANDSHAKE_BYTES:
        raise HandshakeRefused(f"{tag} message too large")
    try:
        fields = _list(decode(bytes(data), max_size=MAX_HANDSHAKE_BYTES), length, tag)
    except EncodingError as exc:
        raise HandshakeRefused(f"malformed {tag}: {exc.message}") from None
    if fields[0] != tag:
        raise HandshakeRefused(f"expected {tag!r}, got {fields[0]!r}")
    return fields


def encode_challenge(chain_id: str, server_key: bytes, challenge: bytes) -> bytes:
    return encode(["challenge", VERSION, chain_id, server_key, challenge])


def decode_challenge(data: object) -> Challenge:
    _, version, chain_id, key, nonce = _decode_handshake(data, "challenge", 5)
    try:
        return Challenge(
            _uint(version, "version"),
            expect(chain_id, str, "chain id"),
            _fixed(key, PUBLIC_KEY_SIZE, "server key"),
            _fixed(nonce, NONCE_SIZE, "challenge"),
        )
    except EncodingError as exc:
        raise HandshakeRefused(f"malformed challenge: {exc.message}") from None


def hello_signing_bytes(chain_id: str, client_key: bytes, server_key: bytes,
                        challenge: bytes, time_ms: int) -> bytes:
    return signing_bytes(DOMAIN_P2P, chain_id, ["hello", client_key, server_key, challenge, time_ms])


def welcome_signing_bytes(chain_id: str, server_key: bytes, client_key: bytes,
                          client_nonce: bytes, time_ms: int) -> bytes:
    return signing_bytes(DOMAIN_P2P, chain_id, ["welcome", server_key, client_key, client_nonce, time_ms])


def encode_hello(signer: Signer, chain_id: str, server_key: bytes, challenge: bytes,
                 time_ms: int, client_nonce: bytes) -> bytes:
    sig = signer.sign(hello_signing_bytes(chain_id, signer.public_key, server_key, challenge, time_ms))
    return encode(["hello", signer.public_key, challenge, time_ms, client_nonce, sig])


def decode_hello(data: object) -> Hello:
    _, key, challenge, time_ms, nonce, sig = _decode_handshake(data, "hello", 6)
    try:
        return Hello(
            _fixed(key, PUBLIC_KEY_SIZE, "client key"),
            _fixed(challenge, NONCE_SIZE, "challenge"),
            _uint(time_ms, "time"),
            _fixed(nonce, NONCE_SIZE, "client nonce"),
            _fixed(sig, SIGNATURE_SIZE, "signature"),
        )
    except EncodingError as exc:
        raise HandshakeRefused(f"malformed hello: {exc.message}") from None


def check_hello(hello: Hello, *, chain_id: str, server_key: bytes, issued_challenge: bytes,
                now_ms: int, window_ms: int, is_validator: Callable[[bytes], bool]) -> None:
    """Server side: accept the client or raise `HandshakeRefused` with an actionable reason.
    `is_validator` says whether the key may hold a session at all: a current validator or
    an admitted full node (p2p.network.PeerNetwork.admission)."""
    if hello.client_key == server_key:
        raise HandshakeRefused("client presented the server's own key")
    if not is_validator(hello.client_key):
        raise HandshakeRefused(f"key {hello.client_key.hex()[:16]}… is not a validator or listed full node "
                               "(not a current validator, not in the governance node registry, not in "
                               "this node's full_node_keys)")
    if hello.challenge != issued_challenge:
        raise HandshakeRefused("challenge does not match the one issued on this connection (replayed?)")
    if abs(now_ms - hello.time_ms) > window_ms:
        raise HandshakeRefused(
            f"hello time is {now_ms - hello.time_ms} ms off (window ±{window_ms} ms); check clocks")
    message = hello_signing_bytes(chain_id, hello.client_key, server_key, hello.challenge, hello.time_ms)
    if not verify(hello.client_key, message, hello.signature):
        raise HandshakeRefused("bad hello signature")


def encode_welcome(signer: Signer, chain_id: str, client_key: bytes, client_nonce: bytes,
                   time_ms: int) -> bytes:
    sig = signer.sign(welcome_signing_bytes(chain_id, signer.public_key, client_key, client_nonce, time_ms))
    return encode(["welcome", time_ms, sig])


def decode_welcome(data: object) -> Welcome:
    _, time_ms, sig = _decode_handshake(data, "welcome", 3)
    try:
        return Welcome(_uint(time_ms, "time"), _fixed(sig, SIGNATURE_SIZE, "signature"))
    except EncodingError as exc:
        raise HandshakeRefused(f"malformed welcome: {exc.message}") from None


def check_welcome(welcome: Welcome, *, chain_id: str, server_key: bytes, client_key: bytes,
                  client_nonce: bytes, now_ms: int, window_ms: int) -> None:
    """Client side: the server proves it holds `server_key` by signing our fresh nonce."""
    if abs(now_ms - welcome.time_ms) > window_ms:
        raise HandshakeRefused(f"welcome time is {now_ms - welcome.time_ms} ms off; check clocks")
    message = welcome_signing_bytes(chain_id, server_key, client_key, client_nonce, welcome.time_ms)
    if not verify(server_key, message, welcome.signature):
        raise HandshakeRefused("bad welcome signature: the server does not hold the pinned key")
