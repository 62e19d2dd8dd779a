"""Helpers for tests and the benchmark: a recording inbox and an in-process cluster."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field
from typing import Callable

from ledger.crypto import Signer
from p2p.config import Limits
from p2p.network import PeerNetwork
from p2p.tls import TLSConfig

FAST_LIMITS = Limits(
    backoff_base_s=0.02,
    backoff_cap_s=0.2,
    fetch_timeout_s=1.0,
    handshake_timeout_s=1.0,
    connect_timeout_s=1.0,
    close_timeout_s=0.2,
)


class FakeInbox:
    """Records what the network delivers; serves `blocks[h]` for height h."""

    def __init__(self, chain_id: str = "cxl-test", blocks: list[tuple[bytes, bytes]] | None = None):
        self.chain_id = chain_id
        self.consensus: list[tuple[bytes, bytes]] = []
        self.txs: list[tuple[bytes, list[bytes]]] = []
        self.blocks = blocks or []
        self.connected: list[bytes] = []  # peer keys, one per (re)established outbound session
        self.duplicates: list[bytes] = []  # peers that said another process has our key
        self.full_nodes: set[bytes] = set()  # keys admitted as full nodes (full_node_allowed)

    def full_node_allowed(self, key: bytes) -> bool:
        return bytes(key) in self.full_nodes

    def head_height(self) -> int:
        return max(0, len(self.blocks) - 1)

    def on_consensus(self, sender_key: bytes, message: bytes) -> None:
        self.consensus.append((sender_key, message))

    def on_txs(self, sender_key: bytes, raw_txs: list[bytes]) -> None:
        self.txs.append((sender_key, list(raw_txs)))

    def serve_blocks(self, from_height: int, limit: int) -> list[tuple[bytes, bytes]]:
        return self.blocks[from_height:from_height + limit]

    def on_peer_connected(self, peer_key: bytes) -> None:
        self.connected.append(peer_key)

    def on_duplicate_key(self, peer_key: bytes) -> None:
        self.duplicates.append(peer_key)

    def all_txs(self) -> list[bytes]:
        return [tx for _, batch in self.txs for tx in batch]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


@dataclass
class Node:
    signer: Signer
    port: int
    inbox: FakeInbox
    net: PeerNetwork
    tls: TLSConfig | None = None

    @property
    def key(self) -> bytes:
        return self.signer.public_key


@dataclass
class Cluster:
    """n validators on 127.0.0.1, each with its own PeerNetwork and FakeInbox."""

    nodes: list[Node] = field(default_factory=list)
    validators: list[dict] = field(default_factory=list)

    @classmethod
    def build(cls, n: int, *, tls: bool = False, limits: Limits = FAST_LIMITS,
              chain_id: str = "cxl-test", extra_validators: list[dict] | None = None) -> "Cluster":
        signers = [Signer(bytes([i + 1]) * 32) for i in range(n)]
        ports = [free_port() for _ in range(n)]
        scheme = "https" if tls else "http"
        validators = [
            {"key": s.public_key, "org": f"org{i}", "p2p": f"{scheme}://127.0.0.1:{p}", "api": ""}
            for i, (s, p) in enumerate(zip(signers, ports))
        ] + list(extra_validators or [])
        cluster = cls(validators=validators)
        for signer, port in zip(signers, ports):
            cluster.nodes.append(cluster.make_node(signer, port, tls=tls, limits=limits, chain_id=chain_id))
        return cluster

    def make_node(self, signer: Signer, port: int, *, tls: bool | TLSConfig = False,
                  limits: Limits = FAST_LIMITS, chain_id: str = "cxl-test") -> Node:
        inbox = FakeInbox(chain_id)
        tls_config = tls if isinstance(tls, TLSConfig) else (TLSConfig.for_signer(signer) if tls else None)
        net = PeerNetwork(inbox, signer, "127.0.0.1", port, self.validators, tls=tls_config, limits=limits)
        return Node(signer, port, inbox, net, tls_config)

    async def start(self) -> None:
        await asyncio.gather(*(node.net.start() for node in self.nodes))

    async def stop(self) -> None:
        await asyncio.gather(*(node.net.stop() for node in self.nodes))

    def fully_connected(self) -> bool:
        """Every node has an outbound session to every other node of the cluster."""
        keys = {node.key.hex() for node in self.nodes}
        return all(
            all(p["connected"] for p in node.net.peer_status() if p["key"] in keys) for node in self.nodes
        )

    async def __aenter__(self) -> "Cluster":
        await self.start()
        try:
            await wait_until(self.fully_connected)
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
