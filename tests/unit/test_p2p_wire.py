"""p2p pure parts: frame codec, handshake checks, bounded buffers, backoff, TLS identities."""

from __future__ import annotations

import dataclasses
import random

import msgpack
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ledger.crypto import Signer
from ledger.encoding import encode
from p2p import wire
from p2p.buffers import OutboundQueue, SeenCache
from p2p.config import Limits
from p2p.errors import HandshakeRefused, ProtocolViolation
from p2p.session import backoff_delay
from p2p.tls import TLSConfig, certificate_key

CHAIN = "cxl-test"
CLIENT = Signer(b"\x01" * 32)
SERVER = Signer(b"\x02" * 32)
OUTSIDER = Signer(b"\x03" * 32)
CHALLENGE = b"\xaa" * 32
NONCE = b"\xbb" * 32
NOW = 1_700_000_000_000
MAX = 1024 * 1024


# ------------------------------------------------------------------------ frames


@pytest.mark.parametrize(
    "frame",
    [
        wire.ConsensusFrame(b"\x00vote"),
        wire.ConsensusFrame(b""),
        wire.TxsFrame((b"tx1", b"tx2")),
        wire.BlocksRequest(7, 100, 64),
        wire.BlocksResponse(7, ((b"block", b"cert"), (b"b2", b"c2"))),
        wire.BlocksResponse(0, ()),
    ],
)
def test_frames_round_trip(frame):
    assert wire.decode_frame(wire.encode_frame(frame), MAX) == frame


@pytest.mark.parametrize(
    "data, why",
    [
        (b"\xc1", "not msgpack"),
        (b"", "empty"),
        (encode(["consensus", b"x"]) + b"\x00", "trailing bytes"),
        (encode(["consensus"]), "missing body"),
        (encode(["gossip", b"x"]), "unknown kind"),
        (encode(["consensus", "text"]), "str where bytes"),
        (encode(["txs", []]), "empty batch"),
        (encode(["txs", [b"a", 5]]), "non-bytes tx"),
        (encode(["txs", [b"t"] * (wire.MAX_TXS_PER_FRAME + 1)]), "batch too large"),
        (encode(["blocks_req", [1, 2]]), "short request"),
        (encode(["blocks_req", [1, -2, 3]]), "negative height"),
        (encode(["blocks_req", [True, 2, 3]]), "bool as int"),
        (encode(["blocks_resp", [1, [[b"b"]]]]), "entry without cert"),
        (msgpack.packb(["consensus", b"x"], use_bin_type=False), "bytes as str (non-canonical)"),
        (encode({"kind": "consensus"}), "map instead of array"),
    ],
)
def test_malformed_frames_are_protocol_violations(data, why):
    with pytest.raises(ProtocolViolation):
        wire.decode_frame(data, MAX)


def test_oversized_frame_is_refused_before_parsing():
    data = wire.encode_frame(wire.ConsensusFrame(b"x" * 2000))
    with pytest.raises(ProtocolViolation, match="exceeds"):
        wire.decode_frame(data, 1000)


# --------------------------------------------------------------------- handshake


def _hello(signer=CLIENT, challenge=CHALLENGE, time_ms=NOW, chain=CHAIN, server=SERVER):
    return wire.decode_hello(wire.encode_hello(signer, chain, server.public_key, challenge, time_ms, NONCE))


def _check(hello, **overrides):
    args = dict(chain_id=CHAIN, server_key=SERVER.public_key, issued_challenge=CHALLENGE, now_ms=NOW,
                window_ms=30_000, is_validator=lambda k: k in {CLIENT.public_key, SERVER.public_key})
    args.update(overrides)
    wire.check_hello(hello, **args)


def test_valid_hello_is_accepted():
    _check(_hello())
    _check(_hello(time_ms=NOW - 29_000))


@pytest.mark.parametrize(
    "hello, overrides, reason",
    [
        (lambda: _hello(signer=OUTSIDER), {}, "not a current validator"),
        (lambda: _hello(challenge=b"\xcc" * 32), {}, "challenge"),
        (lambda: _hello(time_ms=NOW - 31_000), {}, "ms off"),
        (lambda: _hello(time_ms=NOW + 31_000), {}, "ms off"),
        (lambda: _hello(chain="other-chain"), {}, "bad hello signature"),
        (lambda: _hello(server=OUTSIDER), {}, "bad hello signature"),
        (lambda: _hello(signer=SERVER), {}, "own key"),
    ],
)
def test_bad_hellos_are_refused(hello, overrides, reason):
    with pytest.raises(HandshakeRefused, match=reason):
        _check(hello(), **overrides)


def test_hello_with_forged_signature_is_refused():
    good = _hello()
    forged = wire.Hello(good.client_key, good.challenge, good.time_ms, good.client_nonce,
                        bytes([good.signature[0] ^ 1]) + good.signature[1:])
    with pytest.raises(HandshakeRefused, match="bad hello signature"):
        _check(forged)


@pytest.mark.parametrize(
    "data",
    [b"junk", encode(["hello", b"k", CHALLENGE, NOW, NONCE, b"s"]), encode(["welcome", NOW, b"\x00" * 64]),
     b"\x00" * 2000, "text"],
)
def test_malformed_hello_is_refused(data):
    with pytest.raises(HandshakeRefused):
        wire.decode_hello(data)


def test_challenge_round_trip_and_welcome_proves_server_key():
    ch = wire.decode_challenge(wire.encode_challenge(CHAIN, SERVER.public_key, CHALLENGE))
    assert (ch.version, ch.chain_id, ch.server_key, ch.challenge) == (wire.VERSION, CHAIN, SERVER.public_key, CHALLENGE)
    welcome = wire.decode_welcome(wire.encode_welcome(SERVER, CHAIN, CLIENT.public_key, NONCE, NOW))
    args = dict(chain_id=CHAIN, client_key=CLIENT.public_key, client_nonce=NONCE, now_ms=NOW, window_ms=30_000)
    wire.check_welcome(welcome, server_key=SERVER.public_key, **args)
    with pytest.raises(HandshakeRefused, match="pinned key"):
        wire.check_welcome(welcome, server_key=OUTSIDER.public_key, **args)
    with pytest.raises(HandshakeRefused, match="pinned key"):
        wire.check_welcome(welcome, server_key=SERVER.public_key, **{**args, "client_nonce": b"\x00" * 32})


# ----------------------------------------------------------------------- buffers


def test_seen_cache_is_a_bounded_lru():
    seen = SeenCache(3)
    assert [seen.add(k) for k in (b"a", b"b", b"c")] == [True, True, True]
    assert seen.add(b"a") is False  # refreshes a
    assert seen.add(b"d") is True  # evicts b, the least recently seen
    assert b"b" not in seen and b"a" in seen and len(seen) == 3


def test_queue_sends_priority_first():
    q = OutboundQueue(10, 1000)
    q.push(b"tx1", priority=False)
    q.push(b"vote", priority=True)
    q.push(b"tx2", priority=False)
    assert [q.pop(), q.pop(), q.pop(), q.pop()] == [b"vote", b"tx1", b"tx2", None]


def test_full_queue_drops_oldest_gossip_before_any_consensus():
    q = OutboundQueue(3, 10_000)
    q.push(b"v1", priority=True)
    q.push(b"t1", priority=False)
    q.push(b"t2", priority=False)
    q.push(b"v2", priority=True)  # evicts t1
    q.push(b"t3", priority=False)  # evicts t2
    assert q.dropped == 2 and len(q) == 3
    assert [q.pop(), q.pop(), q.pop()] == [b"v1", b"v2", b"t3"]


def test_queue_full_of_consensus_drops_new_gossip_then_oldest_consensus():
    q = OutboundQueue(2, 10_000)
    q.push(b"v1", priority=True)
    q.push(b"v2", priority=True)
    q.push(b"t1", priority=False)  # nothing older to drop: the gossip frame itself goes
    assert [*q._prio] == [b"v1", b"v2"] and not q._bulk
    q.push(b"v3", priority=True)  # oldest consensus goes
    assert [q.pop(), q.pop()] == [b"v2", b"v3"] and q.dropped == 2


def test_queue_is_bounded_by_bytes():
    q = OutboundQueue(1000, 100)
    for _ in range(50):
        q.push(b"x" * 30, priority=False)
    assert q.nbytes <= 100 and len(q) == 3 and q.dropped == 47


def test_backoff_grows_is_capped_and_jittered():
    rng = random.Random(7)
    delays = [backoff_delay(a, 0.1, 5.0, rng) for a in range(12)]
    assert all(0.05 <= d <= 5.0 for d in delays)
    assert delays[0] <= 0.1 and delays[6] > 1.5 and max(delays) <= 5.0
    assert len({round(d, 6) for d in delays[8:]}) > 1  # jitter at the cap


def test_limits_are_validated():
    with pytest.raises(ValueError):
        Limits(max_batch_txs=wire.MAX_TXS_PER_FRAME + 1)
    with pytest.raises(ValueError):
        Limits(max_frame_bytes=1000, max_batch_bytes=1000)


# --------------------------------------------------------------------------- TLS


def test_tls_certificate_carries_the_node_key_and_is_deterministic():
    config = TLSConfig.for_signer(CLIENT)
    assert config == TLSConfig.for_signer(CLIENT)
    assert "PRIVATE" not in repr(config)
    der = x509.load_pem_x509_certificate(config.cert_pem).public_bytes(serialization.Encoding.DER)
    assert certificate_key(der) == CLIENT.public_key
    assert certificate_key(None) is None and certificate_key(b"not a certificate") is None
    assert config.public_key == CLIENT.public_key
    config.server_context()
    config.client_context()


def test_tls_accepts_extra_trust_anchors():
    extra = TLSConfig.for_signer(SERVER).cert_pem  # any PEM certificate loads as an anchor
    config = dataclasses.replace(TLSConfig.for_signer(CLIENT), ca_pem=extra)
    config.client_context()


# ------------------------------------------------------------- node boundary


def test_peer_network_implements_the_node_transport_protocol():
    import inspect

    from node.transport import Transport
    from p2p.network import PeerNetwork

    for name in ("start", "stop", "broadcast", "send", "gossip_txs", "fetch_blocks", "set_validators", "peer_status"):
        ours, theirs = inspect.signature(getattr(PeerNetwork, name)), inspect.signature(getattr(Transport, name))
        assert list(ours.parameters) == list(theirs.parameters), name
        assert inspect.iscoroutinefunction(getattr(PeerNetwork, name)) == inspect.iscoroutinefunction(
            getattr(Transport, name)), name
