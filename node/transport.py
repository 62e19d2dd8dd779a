"""The boundary between the node and the peer network.

`Transport` is what the node calls (implemented by `p2p/` for n > 1, `NullTransport`
for a single validator). `NodeInbox` is what a transport calls when something arrives;
every method is synchronous and cheap (work is queued for the runner), so a transport
may call it straight from its request handlers.

Messages are opaque bytes here: encoded consensus messages (`consensus.messages`) and
raw signed transactions (`ledger.tx`). The transport authenticates peers (only the
validators given to `set_validators` are voting peers; full nodes the inbox admits may
follow); the inbox still checks every
consensus signature and every transaction, so a faulty peer can only be refused.
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable


@runtime_checkable
class Transport(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def broadcast(self, message: bytes) -> None: ...          # encoded consensus message to all other validators
    def send(self, peer_key: bytes, message: bytes) -> None: ...
    def gossip_txs(self, raw_txs: list[bytes], *, again: bool = False) -> None: ...  # batched; again: even if sent before
    async def fetch_blocks(self, from_height: int, peer_key: bytes | None, limit: int) -> list[tuple[bytes, bytes]]: ...  # (block_raw, cert_raw)
    def set_validators(self, validators: list[dict]) -> None: ...  # [{key: bytes, org, p2p, api}] — only these are peers
    def peer_status(self) -> list[dict]: ...


class NullTransport:
    """The transport of a network of one: nothing to send, nobody to fetch from."""

    def __init__(self) -> None:
        self.validators: list[dict] = []
        self.sent = 0

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def broadcast(self, message: bytes) -> None:
        self.sent += 1

    def send(self, peer_key: bytes, message: bytes) -> None:
        self.sent += 1

    def gossip_txs(self, raw_txs: list[bytes], *, again: bool = False) -> None:
        pass

    async def fetch_blocks(self, from_height: int, peer_key: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        return []

    def set_validators(self, validators: list[dict]) -> None:
        self.validators = list(validators)

    def peer_status(self) -> list[dict]:
        return []


class NodeInbox:
    """What the transport calls. Built by the node; safe to call from the event loop thread."""

    def __init__(
        self,
        chain_id: str,
        validator_keys: Callable[[], list[bytes]],
        on_consensus: Callable[[bytes, bytes], None],
        on_txs: Callable[[bytes, list[bytes]], None],
        serve_blocks: Callable[[int, int], list[tuple[bytes, bytes]]],
        node_key: bytes = b"",
        validators: Callable[[], list[dict]] | None = None,
        on_peer_connected: Callable[[bytes], None] | None = None,
        on_duplicate_key: Callable[[bytes], None] | None = None,
        full_node_allowed: Callable[[bytes], bool] | None = None,
        head_height: Callable[[], int] | None = None,
    ):
        self.chain_id = chain_id
        self.node_key = node_key
        self._validator_keys = validator_keys
        self._on_consensus = on_consensus
        self._on_txs = on_txs
        self._serve_blocks = serve_blocks
        self._validators = validators or (lambda: [{"key": k} for k in validator_keys()])
        self._on_peer_connected = on_peer_connected
        self._on_duplicate_key = on_duplicate_key
        self._full_node_allowed = full_node_allowed
        self._head_height = head_height or (lambda: 0)

    def validator_keys(self) -> list[bytes]:
        """Public keys of the validator set deciding the next height (the peers to accept)."""
        return self._validator_keys()

    def validators(self) -> list[dict]:
        """The validator set deciding the next height: [{key: bytes, org, p2p, api}]."""
        return self._validators()

    def on_consensus(self, sender_key: bytes, message: bytes) -> None:
        """An encoded consensus message from peer `sender_key`; decoded, signature-checked
        and queued for the consensus core (dropped if it does not verify)."""
        self._on_consensus(sender_key, message)

    def on_txs(self, sender_key: bytes, raw_txs: list[bytes]) -> None:
        """Raw transactions gossiped by a peer; admitted to the mempool in the background."""
        self._on_txs(sender_key, raw_txs)

    def on_peer_connected(self, peer_key: bytes) -> None:
        """A session to peer `peer_key` was (re)established: the node re-sends its
        consensus state to it (what the old session carried may be lost)."""
        if self._on_peer_connected is not None:
            self._on_peer_connected(peer_key)

    def on_duplicate_key(self, peer_key: bytes) -> None:
        """Peer `peer_key` replaced our session with a newer one from our own key: another
        process runs with this node's key. The node stops signing."""
        if self._on_duplicate_key is not None:
            self._on_duplicate_key(peer_key)

    def full_node_allowed(self, key: bytes) -> bool:
        """May `key`, not a validator, hold a full-node session (ask for blocks, send
        transactions, never vote)? The node's registry, config and former validators."""
        return self._full_node_allowed is not None and bool(self._full_node_allowed(key))

    def head_height(self) -> int:
        """This node's committed height, sent with block answers."""
        return self._head_height()

    def serve_blocks(self, from_height: int, limit: int) -> list[tuple[bytes, bytes]]:
        """Committed blocks from `from_height` on, at most `limit`, as (block_raw, cert_raw)."""
        return self._serve_blocks(from_height, limit)


# make_transport(config: NodeConfig, inbox: NodeInbox, signer: Signer) -> Transport
TransportFactory = Callable[[object, NodeInbox, object], Transport]
