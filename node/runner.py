"""The runner: one asyncio task drains one queue of events into the consensus core and
carries out the effects it returns, one event at a time, in order.

Ordering rules (conventions §7, cometbft `receiveRoutine` + `WriteSync`):

* `PersistSigned` is written to the WAL key with a synced write *before* any later
  `Send`/`Broadcast` in the same effect list is handed to the transport, so a restarted
  node loads what it signed and never signs a conflicting message.
* Answers the node produces itself (`BlockVerdict`, `ProposalReady`, `Committed`) are
  fed back into the core before the next queued event, so the core sees them in order.
* Timers (`ScheduleTimeout`) come back through the queue as `TimeoutFired`.
* A durable write that fails (the WAL record of a signature, a block's batch) halts the
  runner: the core already counts the write as done, so going on would leave the node
  with a record that does not match what it holds. `failure` says why; `node.app.serve`
  then stops the node with an error (restart it once the disk is fixed: the store is at a
  block boundary and the WAL at the last record that reached it).
* A certified block the chain refuses (`BlockInvalid` and the like) is answered with
  `CommitFailed`: the core retries later instead of waiting for `Committed` for good.

Roles (node/follower.py): a node whose key is not in the validator set for the next
height follows the chain as a full node: the core gets no event, consensus messages
are dropped, and fetched blocks are verified (certificate against the tracked set,
re-execution) and committed here. The role is checked after every commit: a validator
removed from the set logs it and goes on as a full node; a full node whose key joins
the set gets a fresh replica at its activation height and votes from there. A lone
validator (no transport) gets a real one from `network_factory` when it needs peers.

Batching: when the core asks for a proposal, a block is cut as soon as `max_block_txs`
transactions are ready, or `block_interval_ms` after the oldest ready transaction
arrived, whichever comes first (the first block of a view entered by a view change takes
at most FIRST_BLOCK_AFTER_VIEW_CHANGE_TXS, `_block_cap`). Both are read from the chain's parameters
(unless config.json overrides them) at every proposal, so a governance change applies at
once; view_timeout_ms and rotation_blocks reach the core in `Committed.config` (see
`_config_change`), from the next height on.

Heartbeat blocks (node/heartbeats.py): with no transaction to propose (none ready, or
every ready one excluded), the primary proposes an empty block only once one is due by
the chain's rule (ledger/heartbeat.py: a due market transition, a pending validator
change, or `heartbeat_interval_ms` since the parent), stamped with its own clock. Until
then one timer is set for the earliest time one will be due (`Chain.next_heartbeat_ms`,
re-checked at least once a minute in case the wall clock steps); a proposal, a commit,
stop and halt cancel it. Replicas refuse an empty block that is not due at its header
time (`empty_block_not_due`), so this node's clock decides only when, never whether.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

from consensus import effects as fx
from consensus import events as ev
from consensus.messages import ViewChange, encode_message
from consensus.state import ConsensusConfig, SignedState, primary_index
from ledger.block import Block, Certificate, commit_signing_bytes
from ledger.chain import Chain
from ledger.encoding import decode, encode
from ledger.errors import BlockInvalid, LedgerError, StoreError
from ledger.execution import BlockResult
from ledger.store.base import PREFIX_WAL

from node import inbound
from node.follower import FULL, VALIDATOR, FollowRefused, apply_followed, decode_fetched, role_change, role_of
from node.heartbeats import HeartbeatProposer, _HeartbeatCheck
from node.mempool import Mempool
from node.startup_sync import DurableWriteFailed, sync_before_signing
from node.transport import Transport

WAL_SIGNED = PREFIX_WAL + b"signed"
WAL_PROPOSAL = PREFIX_WAL + b"proposal"  # [height, view, block]: our last proposal, for restart
MAX_INBOUND_QUEUE = 10_000   # peer messages beyond this are dropped (consensus recovers by timeouts)
FETCH_LIMIT = 100            # blocks per catch-up request
FIRST_BLOCK_AFTER_VIEW_CHANGE_TXS = 250  # the first block of a new view is kept small (Runner._block_cap)
MAX_EVIDENCE = 1_000
STARTUP_SYNC_S = 3.0         # with no peer answering for this long (all starting at once) a node starts as it is


def _test_clock_offset_ms() -> int:
    """TEST-ONLY hook: CXL_TEST_CLOCK_OFFSET_MS shifts this process's wall clock (block
    times, the block time check, p2p handshake times) by that many ms, so integration
    tests can run a validator with a skewed clock without libfaketime. Nothing else reads
    it; never set it on a real validator. Read once, at import."""
    raw = os.environ.get("CXL_TEST_CLOCK_OFFSET_MS", "").strip()
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"CXL_TEST_CLOCK_OFFSET_MS must be an integer number of ms, got {raw!r}") from None


_TEST_CLOCK_OFFSET_MS = _test_clock_offset_ms()


def now_ms() -> int:
    """The node's wall clock in ms since the epoch (the one clock of the node)."""
    return time.time_ns() // 1_000_000 + _TEST_CLOCK_OFFSET_MS


def load_signed_state(store) -> SignedState | None:
    raw = store.get(WAL_SIGNED)
    return None if raw is None else SignedState.decode(raw)


def persist_signed_state(store, record: SignedState) -> None:
    store.write({WAL_SIGNED: record.encode()}, sync=True)


# The chain parameters the consensus core's configuration is made of (with their defaults).
CONSENSUS_PARAMS = (("view_timeout_ms", 2000), ("rotation_blocks", 30), ("block_interval_ms", 100))


def consensus_params(params: dict) -> tuple[int, ...]:
    return tuple(params.get(name, default) for name, default in CONSENSUS_PARAMS)


def consensus_config(params: dict, base: ConsensusConfig | None = None) -> ConsensusConfig:
    """The core's configuration for the height the state with `params` decides; fields that
    are not chain parameters come from `base`."""
    base = base if base is not None else ConsensusConfig()
    timeout, rotation, interval = consensus_params(params)
    return dataclasses.replace(
        base,
        view_timeout_ms=timeout,
        rotation_blocks=rotation,
        # an honest primary waits up to block_interval_ms before it cuts a block: never a strike
        slow_proposal_ms=max(timeout // 2, 2 * interval),
        max_timeout_ms=max(base.max_timeout_ms, timeout),  # a governed timeout is never cut short
    )


def default_replica_factory(chain: Chain, signer) -> Callable[[SignedState | None, int], Any]:
    def make(signed: SignedState | None, height: int):
        from consensus.core import Replica  # late: the core is optional for tests with a fake
        # the certificate of the head lets a restarted replica help peers that are behind
        return Replica(chain.chain_id, signer, tuple(chain.validator_keys), height,
                       consensus_config(chain.params), signed,
                       last_certificate=chain.get_cert(chain.height) if chain.height else None)
    return make


# Internal events: handled by the runner itself, never shown to the core.
@dataclass(frozen=True, slots=True)
class _TxsAdded:
    count: int


@dataclass(frozen=True, slots=True)
class _ProposeCheck:
    pass


@dataclass(frozen=True, slots=True)
class _Fetched:
    blocks: list  # [(block_raw, cert_raw)]
    peer: bytes | None


@dataclass(frozen=True, slots=True)
class _SyncCheck:
    pass


@dataclass(frozen=True, slots=True)
class _Call:
    fn: Callable[[], None]


class _Fatal(Exception):
    """A durable write failed: the runner stops (see the module docstring)."""


_STOP = object()
_INTERNAL = (_TxsAdded, _ProposeCheck, _HeartbeatCheck, _Fetched, _SyncCheck, _Call)


class Runner(HeartbeatProposer):
    def __init__(
        self,
        chain: Chain,
        mempool: Mempool,
        signer,
        transport: Transport,
        *,
        replica_factory: Callable[[SignedState | None, int], Any] | None = None,
        block_interval_ms: int | None = None,
        max_block_txs: int | None = None,
        sync_interval_ms: int = 5_000,
        max_block_bytes: int = 3 * 1024 * 1024,
        log: logging.Logger | None = None,
        clock_ms: Callable[[], int] = now_ms,
        follow_interval_ms: int = 200,
        network_factory: Callable[[], Transport] | None = None,
    ):
        self.chain = chain
        self.store = chain.store
        self.mempool = mempool
        self.signer = signer
        self.transport = transport
        self.log = log or logging.getLogger("cxl.node")
        self.clock_ms = clock_ms
        self._interval_override = block_interval_ms
        self._max_txs_override = max_block_txs
        self.queue: asyncio.Queue = asyncio.Queue()
        self._local: collections.deque = collections.deque()
        self._results: dict[bytes, tuple[Block, BlockResult]] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._proposal: fx.RequestProposal | None = None
        self._propose_timer: asyncio.TimerHandle | None = None
        self._heartbeat_timer: asyncio.TimerHandle | None = None  # next check for a due heartbeat block
        self._fetching = False
        self._bg: set[asyncio.Task] = set()
        self.sync_interval_ms = sync_interval_ms
        self.max_block_bytes = max_block_bytes
        self._waiters: dict[bytes, list[asyncio.Future]] = {}
        self._task: asyncio.Task | None = None
        self.failure: str | None = None  # why the runner halted (a durable write failed)
        # called after each commit with (block, result, certificate, {tx hash: admission time})
        self.commit_listeners: list[Callable[[Block, BlockResult, Certificate, dict], None]] = []
        self.evidence: collections.deque = collections.deque(maxlen=MAX_EVIDENCE)
        self.evidence_count = 0
        self.duplicate_key = False  # set by on_duplicate_key: this node then signs nothing
        self.view = 0
        self.view_changes = 0
        self.clock_refusals = 0  # blocks refused as too far ahead of this node's clock
        self.catching_up = False  # applying blocks fetched from peers (status, /health)
        self.last_cert: Certificate | None = chain.get_cert(chain.height) if chain.height else None
        self._vset = chain.validators
        # full nodes (node/follower.py): the live role, and what following counted
        self.role = role_of(chain.validator_keys, signer.public_key)
        self.follow_interval_ms = follow_interval_ms
        self.follow_refusals = 0       # fetched blocks refused (bad certificate, bad execution)
        self.last_follow_error = ""
        self.refused_consensus = 0     # consensus messages dropped because this node does not vote
        self.role_changes: list[dict] = []  # {"role", "height"}: when the role changed, latest last
        self.network_factory = network_factory  # builds the p2p transport of a node that has none
        self.transport_listeners: list[Callable[[Transport], None]] = []
        self._polling = False  # the sync/follow poll runs (started by _run_inner)
        factory = self._factory = replica_factory or default_replica_factory(chain, signer)
        self.signed_state = load_signed_state(self.store)
        self.replica = factory(self.signed_state, chain.height + 1)
        self._params_seen = consensus_params(chain.params)  # what the replica's config was made from
        if self.signed_state is not None:
            self.view = self.signed_state.current_view

    # parameters ---------------------------------------------------------------------
    @property
    def block_interval_ms(self) -> int:
        return self._interval_override or self.chain.params.get("block_interval_ms", 100)

    @property
    def max_block_txs(self) -> int:
        return self._max_txs_override or self.chain.params.get("max_block_txs", 2000)

    # lifecycle ------------------------------------------------------------------------
    def start(self) -> asyncio.Task:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="cxl-runner")
        return self._task

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self.queue.put_nowait(_STOP)
            try:
                await asyncio.wait_for(self._task, 10)
            except asyncio.TimeoutError:
                self._task.cancel()
        for h in self._timers:
            h.cancel()
        self._timers.clear()
        if self._propose_timer is not None:
            self._propose_timer.cancel()
        self._cancel_heartbeat()
        for t in list(self._bg):
            t.cancel()
        for futs in self._waiters.values():
            for f in futs:
                if not f.done():
                    f.cancel()
        self._waiters.clear()

    @property
    def task(self) -> asyncio.Task | None:
        """The runner task: it ends on stop() or when the runner halts (`failure` set)."""
        return self._task

    async def _run(self) -> None:
        try:
            await self._run_inner()
        except _Fatal as exc:
            self._halt(str(exc))

    async def _run_inner(self) -> None:
        if self.role == VALIDATOR:
            try:
                await self._sync_before_signing()
            except _Fatal:
                raise
            except Exception:
                self.log.exception("runner: start-up sync failed; starting from height %d", self.chain.height)
            self._check_role(self.chain.height, since=True)  # removed from the set while it was down
        if self.role == FULL:
            self.log.info("following the chain as a full node from height %d: this node signs nothing",
                          self.chain.height, extra={"event": "following", "height": self.chain.height})
        else:
            self._carry_out(self._core("start", self.replica.start))
            self._drain_local()
            self._recover_single()
            self._drain_local()
        self._sync_check()
        while True:
            item = await self.queue.get()
            if item is _STOP:
                return
            try:
                self._dispatch(item)
                self._drain_local()
            except _Fatal:
                raise
            except Exception:  # a bug must not stop the node silently: log it and go on
                self.log.exception("runner: event %s failed", type(item).__name__)

    def _halt(self, reason: str) -> None:
        """Stop taking events: nothing more reaches the core, nothing more is sent."""
        self.failure = reason
        self.log.critical("runner halted: %s; stop the node, fix the disk, restart it", reason)
        self._local.clear()
        for h in self._timers:
            h.cancel()
        self._timers.clear()
        if self._propose_timer is not None:
            self._propose_timer.cancel()
            self._propose_timer = None
        self._cancel_heartbeat()
        self.release_waiters()

    # inputs from the rest of the node -------------------------------------------------
    def put(self, event) -> None:
        if self.failure is None:
            self.queue.put_nowait(event)

    def notify_txs_added(self, count: int) -> None:
        if self.failure is None:
            self.queue.put_nowait(_TxsAdded(count))

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the runner task, between two events (e.g. reads that must not race a commit)."""
        self.queue.put_nowait(_Call(fn))

    def on_consensus_bytes(self, sender_key: bytes, raw: bytes) -> None:
        """A consensus message from peer `sender_key`: decode and check it (shape, block
        hashes, signatures: `consensus.messages.check_message`) and queue it for the core.
        Heavy messages are checked in a thread pool, in arrival order per sender; refused
        and expensive ones are charged to the sender, whose messages are dropped unread
        once it is over its budget (node/inbound.py)."""
        if self.role != VALIDATOR:  # a full node never feeds a core: nothing to vote on
            self.refused_consensus += 1
            if self.refused_consensus == 1:
                self.log.info("consensus message from %s dropped: this node is a full node and does not vote",
                              sender_key.hex()[:16])
            return
        gate = self._inbound_gate()
        if not gate.allowed(sender_key):
            return
        if self.queue.qsize() > MAX_INBOUND_QUEUE:
            self.log.warning("runner: queue full, dropping a consensus message from %s", sender_key.hex()[:16])
            return
        job = functools.partial(inbound.check_bytes, raw, self.chain.chain_id, tuple(self.chain.validator_keys),
                                self.chain.params.get("rotation_blocks", 30))

        def deliver(verdict: inbound.Verdict) -> None:
            gate.charge(sender_key, verdict)
            if verdict.msg is None:
                self.log.info("consensus message from %s refused: %s", sender_key.hex()[:16], verdict.error)
            else:
                self.queue.put_nowait(ev.MessageReceived(verdict.msg))

        gate.check(sender_key, raw, job, deliver)

    def _inbound_gate(self) -> inbound.InboundGate:
        # created on first use so the constructor stays as it is
        gate = getattr(self, "_gate", None)
        if gate is None:
            gate = self._gate = inbound.InboundGate(self.log)
        return gate

    def on_duplicate_key(self, peer_key: bytes) -> None:
        """Another process signs with our node key (a peer told us, p2p duplicate_session):
        from now on this node feeds the consensus core nothing, so it signs no vote, no
        proposal and no view change until it is restarted. It keeps serving reads."""
        if self.duplicate_key:
            return
        self.duplicate_key = True  # at once: not one more event reaches the core
        self.log.error("duplicate node key: another process uses this node's key (peer %s said so); this node "
                       "has stopped signing (status duplicate_key, /health degraded). Stop one of them and "
                       "restart the other", peer_key.hex()[:16])

    def on_peer_connected(self, peer_key: bytes) -> None:
        """A session to a peer (re)opened: the core sends it its current state again."""
        self.queue.put_nowait(ev.PeerConnected(bytes(peer_key)))

    def wait_committed(self, tx_hash: bytes) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(tx_hash, []).append(fut)
        return fut

    def release_waiters(self) -> None:
        """Answer every long-poll now (with None: not committed), e.g. before shutting down."""
        for futs in self._waiters.values():
            for f in futs:
                if not f.done():
                    f.set_result(None)
        self._waiters.clear()

    def forget_waiter(self, tx_hash: bytes, fut: asyncio.Future) -> None:
        futs = self._waiters.get(tx_hash)
        if futs and fut in futs:
            futs.remove(fut)
            if not futs:
                del self._waiters[tx_hash]

    # the loop body ----------------------------------------------------------------------
    def _dispatch(self, item) -> None:
        if isinstance(item, _TxsAdded):
            self._feed(self._pending_event())
            self._maybe_propose()
        elif isinstance(item, _ProposeCheck):
            self._propose_timer = None
            self._maybe_propose()
        elif isinstance(item, _HeartbeatCheck):
            self._cancel_heartbeat()  # the timer that sent it, or one this check makes moot
            self._maybe_propose()
        elif isinstance(item, _Fetched):
            self._apply_fetched(item)
        elif isinstance(item, _SyncCheck):
            self._sync_check()
        elif isinstance(item, _Call):
            item.fn()
        else:
            self._feed(item)

    def _drain_local(self) -> None:
        while self._local:
            self._feed(self._local.popleft())

    def _feed(self, event) -> None:
        if self.duplicate_key:  # another process signs with our key: sign nothing (on_duplicate_key)
            return
        if self.role != VALIDATOR:  # a full node: the core is not running
            return
        effects = self._core(type(event).__name__, lambda: self.replica.on_event(event))
        if isinstance(event, ev.TimeoutFired) and event.kind in ("progress", "censor", "slow"):
            for e in effects:  # say why this node suspects the primary (kinds: docs/consensus.md §4)
                if isinstance(e, fx.Broadcast) and isinstance(e.msg, ViewChange):
                    self.log.info("asking for view %d: %s timeout at height %d", e.msg.new_view, event.kind,
                                  event.height)
        self._carry_out(effects)
        self._note_view(self.view)

    def _core(self, what: str, call) -> list:
        try:
            return list(call() or [])
        except Exception:
            self.log.exception("consensus core failed on %s", what)
            return []

    def _carry_out(self, effects: list) -> None:
        for e in effects:
            try:
                self._effect(e)
            except _Fatal:
                raise  # never send what we could not persist: the rest of this list is dropped
            except Exception:
                self.log.exception("runner: effect %s failed", type(e).__name__)

    def _effect(self, e) -> None:
        if isinstance(e, fx.PersistSigned):
            try:
                persist_signed_state(self.store, e.record)
            except Exception as exc:
                raise _Fatal(f"writing the signing record (WAL) failed: {exc!r}") from exc
            self.signed_state = e.record
            self._note_view(e.record.current_view)
        elif isinstance(e, fx.Broadcast):
            self.transport.broadcast(encode_message(e.msg))
        elif isinstance(e, fx.Send):
            self.transport.send(e.to, encode_message(e.msg))
        elif isinstance(e, fx.ScheduleTimeout):
            self._note_view(e.view)
            self._schedule(e)
        elif isinstance(e, fx.ValidateBlock):
            self._validate(e)
        elif isinstance(e, fx.RequestProposal):
            self._note_view(e.view)
            self._proposal = e
            self._maybe_propose()
        elif isinstance(e, fx.CommitBlock):
            self._commit(e)
        elif isinstance(e, fx.FetchBlocks):
            self._fetch(e)
        elif isinstance(e, fx.Evidence):
            self._evidence(e)
        elif isinstance(e, fx.ResendTx):
            stx = self.mempool.get(e.tx_hash)
            if stx is not None:
                self.log.info("re-gossiping tx %s: held past the timeout and still not proposed", e.tx_hash.hex())
                self.transport.gossip_txs([stx.raw], again=True)
        else:
            self.log.warning("runner: unknown effect %r", type(e).__name__)

    def _note_view(self, view: int) -> None:
        """Report the view the core is in. It can go down: a replica whose lone view change
        became moot takes the view of the others' certificate (rule F), and a status that
        kept the higher view would show it out of step with the others for good."""
        view = getattr(self.replica, "view", max(view, self.view))
        if view > self.view:
            self.view_changes += 1
        self.view = view

    # timers -------------------------------------------------------------------------------
    def _schedule(self, e: fx.ScheduleTimeout) -> None:
        self._later(max(0, e.after_ms) / 1000, ev.TimeoutFired(e.kind, e.view, e.height, e.gen))

    def _later(self, delay_s: float, item) -> None:
        """Queue `item` after `delay_s`; cancelled by stop()."""
        def fire():
            self._timers.discard(handle)
            self.queue.put_nowait(item)

        handle = asyncio.get_running_loop().call_later(delay_s, fire)
        self._timers.add(handle)

    # proposals ------------------------------------------------------------------------------
    def _maybe_propose(self) -> None:
        req = self._proposal
        if req is None or req.height != self.chain.height + 1 or self.duplicate_key:
            return
        ready = self.mempool.ready_count()
        if ready == 0:
            self._maybe_heartbeat(req)
            return
        cap = self._block_cap(req)
        if ready < cap:
            if self._propose_timer is not None:
                return  # a check is already due when the oldest ready tx has waited long enough
            oldest = self.mempool.oldest_ready()
            waited_ms = (self.mempool.clock() - oldest) * 1000 if oldest is not None else 0
            if waited_ms < self.block_interval_ms:
                delay = (self.block_interval_ms - waited_ms) / 1000
                self._propose_timer = asyncio.get_running_loop().call_later(
                    delay, self.queue.put_nowait, _ProposeCheck())
                return
        txs = self.mempool.take(cap, self.max_block_bytes)
        verified = self.mempool.verified_hashes()
        block, result = self.chain.build_block(
            txs, time_ms=self.clock_ms(), view=req.view, proposer=self.signer.public_key,
            last_cert=self.last_cert, verified=verified)
        for stx, code, message in result.excluded:
            self.log.info("dropping tx %s from the mempool: %s (%s)", stx.hash.hex(), message, code)
            self.mempool.remove(stx.hash)
        if result.excluded:
            self._local.append(self._pending_event())
        if not result.txs:  # every ready tx was excluded: an empty block only if one is due
            reason = self.chain.heartbeat_due(block.header.time_ms)
            if reason is None:
                self._arm_heartbeat()
                self._maybe_propose_later()
                return
            self.log.info("no includable tx; proposing heartbeat block %d (%s)", block.height, reason)
        self._propose(req, block, result)

    def _block_cap(self, req: fx.RequestProposal) -> int:
        """Transactions for this proposal: `max_block_txs`, except the first block of a view
        entered by a view change (after a partition heals, a crash, a slow primary), which
        takes at most FIRST_BLOCK_AFTER_VIEW_CHANGE_TXS: every replica has a backlog to
        admit then, and a small block commits in one round trip instead of the seconds a
        full one takes to validate; the blocks after it are full again."""
        last_view = self.last_cert.view if self.last_cert is not None else 0
        if req.view > last_view:
            return min(self.max_block_txs, FIRST_BLOCK_AFTER_VIEW_CHANGE_TXS)
        return self.max_block_txs

    def _propose(self, req: fx.RequestProposal, block: Block, result: BlockResult) -> None:
        self._proposal = None
        self._cancel_heartbeat()
        self._results[block.hash] = (block, result)
        raw = block.encode()
        # kept so a lone validator that crashes after signing can finish this block; made
        # durable by the synced PersistSigned that precedes any signature over it
        self.store.write({WAL_PROPOSAL: encode([block.height, req.view, raw])}, sync=False)
        self.log.info("proposing block %d view %d with %d txs", block.height, req.view, len(block.txs))
        self._local.append(ev.ProposalReady(req.view, req.height, block.hash, raw))

    def _maybe_propose_later(self) -> None:
        if self.mempool.ready_count() and self._propose_timer is None:
            self._propose_timer = asyncio.get_running_loop().call_later(
                self.block_interval_ms / 1000, self.queue.put_nowait, _ProposeCheck())

    # validation --------------------------------------------------------------------------------
    def _validate(self, e: fx.ValidateBlock) -> None:
        try:
            block = Block.decode(e.block)
            if block.hash != e.block_hash:
                raise BlockInvalid("block hash does not match its header", "bad_hash")
            cached = self._results.get(block.hash)
            if cached is None:
                result = self.chain.validate_block(block, now_ms=self.clock_ms(),
                                                   verified=self.mempool.verified_hashes())
                self._results[block.hash] = (block, result)
            verdict = ev.BlockVerdict(e.block_hash, True, "")
        except (LedgerError, ValueError) as exc:
            code = getattr(exc, "code", "invalid")
            self.log.warning("block %s at height %d is invalid: %s", e.block_hash.hex()[:16], e.height, exc)
            verdict = ev.BlockVerdict(e.block_hash, False, f"{code}: {exc}")
            if code == "bad_time":
                self._note_clock_refusal(e)
        self._local.append(verdict)

    def _note_clock_refusal(self, e: fx.ValidateBlock) -> None:
        """A block refused as too far in the future may be this node's clock running
        behind, not the proposer's ahead; refusing every block costs this node its vote
        while nothing else fails. Say which, with the skew measured against the peers."""
        try:
            ahead = Block.decode(e.block).header.time_ms - self.clock_ms()
        except (LedgerError, ValueError):
            return
        tolerance = self.chain.params.get("time_skew_ms", 2000)
        if ahead <= tolerance:
            return  # refused for not being after its parent: the proposer's clock, not ours
        self.clock_refusals += 1
        skew_fn = getattr(self.transport, "clock_skew_ms", None)
        skew = skew_fn() if skew_fn is not None else None
        whose = ("unknown (no peer measured)" if skew is None
                 else f"{skew:+d} ms from the peers' median: this node's clock is off" if abs(skew) > tolerance // 2
                 else f"{skew:+d} ms from the peers' median: the proposer's clock is off")
        self.log.warning("refused block %d (%s) for its time, %d ms ahead of this node's clock (tolerance "
                         "time_skew_ms %d); this node's clock is %s; check NTP", e.height,
                         e.block_hash.hex()[:16], ahead, tolerance, whose)

    # commit -------------------------------------------------------------------------------------
    def _commit(self, e: fx.CommitBlock) -> None:
        if e.height <= self.chain.height:  # caught up meanwhile: tell the core where the chain is
            self.log.info("commit of height %d skipped: already at %d", e.height, self.chain.height)
            self._local.append(ev.Committed(self.chain.height, self.chain.head.block_hash,
                                            tuple(self.chain.validator_keys),
                                            certificate=self.chain.get_cert(self.chain.height),
                                            config=self._config_change()))
            return
        cached = self._results.pop(e.block_hash, None)  # a retry re-validates from scratch
        try:
            if cached is None:
                block = Block.decode(e.block)
                if block.hash != e.block_hash:
                    raise BlockInvalid("block hash does not match its header", "bad_hash")
                result = self.chain.validate_block(block, verified=self.mempool.verified_hashes())
            else:
                block, result = cached
            self.chain.commit_block(block, e.certificate, result)
        except StoreError as exc:
            raise _Fatal(f"writing block {e.height} failed: {exc}") from exc
        except LedgerError as exc:
            self.log.critical("cannot commit certified block %d (%s): %s; will retry", e.height,
                              e.block_hash.hex(), exc)
            self._local.append(ev.CommitFailed(e.height, e.block_hash, f"{getattr(exc, 'code', 'invalid')}: {exc}"))
            return
        except Exception as exc:  # e.g. plyvel.IOError from the synced batch: the disk failed
            raise _Fatal(f"writing block {e.height} failed: {exc!r}") from exc
        self._after_commit(block, result, e.certificate)

    def _after_commit(self, block: Block, result: BlockResult, cert: Certificate) -> None:
        self._results.clear()
        self.last_cert = cert
        self._proposal = None
        if self._propose_timer is not None:
            self._propose_timer.cancel()
            self._propose_timer = None
        self._cancel_heartbeat()  # the new head has its own due time
        admitted = {stx.hash: self.mempool.added_at(stx.hash) for stx in result.txs if stx.hash in self.mempool}
        dropped = self.mempool.on_commit(result.txs, block.height + 1)
        for stx in dropped:
            self.log.info("dropped stale tx %s after block %d", stx.hash.hex(), block.height)
        validators = self.chain.validators  # the set deciding the next height
        if validators != self._vset:
            self._vset = validators
            self.log.info("validator set for height %d: %s", block.height + 1,
                          ", ".join(v["key"].hex()[:16] for v in validators))
            self.transport.set_validators(validators)
            if len(validators) > 1:
                self.ensure_network(f"the validator set now has {len(validators)} members")
        self.log.info("committed block %d %s txs=%d", block.height, block.hash.hex(), len(block.txs))
        for fn in self.commit_listeners:
            try:
                fn(block, result, cert, admitted)
            except Exception:
                self.log.exception("commit listener failed")
        for stx in result.txs:
            for fut in self._waiters.pop(stx.hash, []):
                if not fut.done():
                    fut.set_result(block.height)
        self._local.append(ev.Committed(block.height, block.hash, tuple(self.chain.validator_keys),
                                        certificate=cert, config=self._config_change()))
        # always, even 0: the core's count predates this block, and a stale non-zero count
        # would make its progress timer start a view change in an idle network
        self._local.append(self._pending_event())
        self._check_role(block.height)

    def _config_change(self) -> ConsensusConfig | None:
        """The core's configuration for the next height if the committed state changed its
        chain parameters (governance set_param), else None: the core switches in Committed,
        at the same height on every node, without a restart."""
        params = consensus_params(self.chain.params)
        if params == self._params_seen:
            return None
        self._params_seen = params
        base = getattr(self.replica, "config", None)
        config = consensus_config(self.chain.params, base if isinstance(base, ConsensusConfig) else None)
        self.log.info("consensus parameters for height %d: view_timeout_ms=%d rotation_blocks=%d "
                      "block_interval_ms=%d", self.chain.height + 1, *params)
        return config

    def _pending_event(self) -> ev.PendingTxs:
        limit = min(self.chain.params.get("max_tx_bytes", 64 * 1024), self.max_block_bytes)
        return ev.PendingTxs(self.mempool.ready_count(),
                             self.mempool.oldest_proposable(limit, self.chain.height + 1))

    # catch-up --------------------------------------------------------------------------------------
    def _fetch(self, e: fx.FetchBlocks) -> None:
        if self._fetching:
            return
        self._fetching = True
        from_height = max(e.from_height, self.chain.height + 1)

        async def go():
            try:
                blocks = await self.transport.fetch_blocks(from_height, e.peer, FETCH_LIMIT)
            except Exception as exc:
                self.log.warning("fetching blocks from %d failed: %s", from_height, exc)
                blocks = []
            self.queue.put_nowait(_Fetched(blocks, e.peer))

        task = asyncio.get_running_loop().create_task(go())
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    def _sync_check(self) -> None:
        """With peers, ask now and then whether the chain went on without us (a node that
        restarts into an idle network hears no consensus traffic that would make the core
        fetch). An empty answer costs one small request. A full node hears no consensus
        traffic at all: it asks every `follow_interval_ms`."""
        self._polling = True
        if self.role == FULL:
            self._fetch(fx.FetchBlocks(self.chain.height + 1, None))
            self._later(self.follow_interval_ms / 1000, _SyncCheck())
            return
        if len(self.chain.validator_keys) < 2 or self.sync_interval_ms <= 0:
            return
        self._fetch(fx.FetchBlocks(self.chain.height + 1, None))
        self._later(self.sync_interval_ms / 1000, _SyncCheck())

    def _apply_fetched(self, item: _Fetched) -> None:
        """Hand fetched blocks to the core one at a time (it checks each certificate against
        its validator set and answers CommitBlock); stop at the first it does not take."""
        self._fetching = False
        self.catching_up = False  # until this answer moves the chain and another fetch follows
        start = self.chain.height
        for block_raw, cert_raw in item.blocks:
            try:
                block = Block.decode(block_raw)
                cert = Certificate.from_wire(decode(cert_raw))
            except LedgerError as exc:
                self.log.warning("fetched block refused: %s", exc)
                return
            if block.height <= self.chain.height:
                continue
            if block.height != self.chain.height + 1:
                return
            if self.role == FULL:  # no core to check it: verify and apply it here
                if not self._follow(block_raw, cert_raw, item.peer):
                    return
                continue
            self._local.append(ev.FetchedBlock(block.height, block.hash, block_raw, cert))
            self._drain_local()
            if self.chain.height < block.height:
                self.log.warning("fetched block %d was not committed (certificate refused?)", block.height)
                return
        if self.chain.height > start:  # there may be more: go on until a peer has nothing newer
            self.catching_up = True
            self._fetch(fx.FetchBlocks(self.chain.height + 1, item.peer))

    # full node: following and role changes ---------------------------------------------------------
    def _follow(self, block_raw: bytes, cert_raw: bytes, peer: bytes | None) -> bool:
        """Verify and commit one fetched block as a full node (node/follower.py)."""
        try:
            block, cert = decode_fetched(block_raw, cert_raw)
            followed = apply_followed(self.chain, block, cert)
        except FollowRefused as exc:
            self.follow_refusals += 1
            self.last_follow_error = str(exc)
            self.log.warning("fetched %s (from %s); asking again later", exc,
                             peer.hex()[:16] if peer else "a peer",
                             extra={"event": "follow_refused", "code": exc.code, "height": exc.height})
            return False
        except StoreError as exc:
            raise _Fatal(f"writing followed block {self.chain.height + 1} failed: {exc}") from exc
        except Exception as exc:  # e.g. plyvel.IOError from the synced batch: the disk failed
            raise _Fatal(f"writing a followed block failed: {exc!r}") from exc
        self._after_commit(followed.block, followed.result, followed.certificate)
        self._drain_local()
        return True

    def _check_role(self, height: int, *, since: bool = False) -> None:
        """After the commit of `height`: act on a change of role for height+1. `since`:
        the change may lie further back (blocks applied by the start-up sync): its height
        is the one after the last block that changed the set."""
        change = role_change(self.role, self.chain.validator_keys, self.signer.public_key, height + 1)
        if change is None:
            return
        if since:
            changes = self.chain.validator_changes(0, 1 << 30)
            if changes:
                change = dataclasses.replace(change, height=changes[-1][0] + 1)
        self.role = change.new
        self.role_changes.append({"role": change.new, "height": change.height})
        if change.removed:
            self.log.error("this node's key was removed from the validator set by block %d: from height %d it "
                           "continues as a full node (it follows the chain and serves reads, and signs nothing "
                           "more)", height, change.height,
                           extra={"event": "removed_from_validators", "height": change.height})
            self._proposal = None
            if self._propose_timer is not None:
                self._propose_timer.cancel()
                self._propose_timer = None
            for h in self._timers:  # the core's timeouts; the follow poll is re-armed below
                h.cancel()
            self._timers.clear()
            self._local.clear()
            if self._polling:
                self._sync_check()
        else:
            self.log.warning("this node's key joined the validator set: it votes from height %d", change.height,
                             extra={"event": "joined_validators", "height": change.height})
            self._local.clear()  # events for the old (absent) core
            self.replica = self._factory(self.signed_state, change.height)
            self._carry_out(self._core("start", self.replica.start))
            self._local.append(self._pending_event())

    def ensure_network(self, why: str) -> None:
        """Give a node that runs without a p2p transport (it started as the only validator)
        a real one, now: `network_factory` builds it, this starts it."""
        if type(self.transport).__name__ != "NullTransport":
            return
        if self.network_factory is None:
            self.log.error("%s but this node runs without a p2p transport (it started as the only validator): "
                           "restart it to connect to peers", why)
            return
        try:
            transport = self.network_factory()
            transport.set_validators(self.chain.validators)
        except Exception as exc:
            self.log.error("%s but the p2p transport could not be built: %s; restart the node", why, exc)
            return
        self.log.warning("%s: starting the p2p transport (this node ran without one)", why,
                         extra={"event": "network_started", "height": self.chain.height})
        self.transport = transport
        for fn in self.transport_listeners:
            try:
                fn(transport)
            except Exception:
                self.log.exception("transport listener failed")

        async def start() -> None:
            try:
                await transport.start()
            except Exception as exc:
                self.log.error("the p2p transport did not start: %s; restart the node", exc)

        task = asyncio.get_running_loop().create_task(start())
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def _sync_before_signing(self) -> None:
        """Before the core may sign anything, apply what the peers have committed (from f+1
        of them; a node without a signing record also waits for one block committed
        without it): node/startup_sync.py says why."""
        start = self.chain.height
        self.catching_up = True
        try:
            try:
                await sync_before_signing(self.chain, self.transport, self.signer.public_key,
                                          self.signed_state is not None, self.log, STARTUP_SYNC_S)
            except DurableWriteFailed as exc:
                raise _Fatal(str(exc)) from exc
        finally:
            self.catching_up = False
        if self.chain.height == start:
            return
        self.log.info("synced from height %d to %d before signing anything", start, self.chain.height)
        self.last_cert = self.chain.get_cert(self.chain.height)
        self.mempool.on_commit([], self.chain.height + 1)
        self.transport.set_validators(self.chain.validators)
        self.replica = self._factory(self.signed_state, self.chain.height + 1)
        self._params_seen = consensus_params(self.chain.params)

    def _recover_single(self) -> None:
        """A lone validator that crashed after signing at height h but before committing
        cannot be rescued by a view change (there is nobody else). If what it signed is the
        block it proposed (or prepared), its own commit signature over that same block is
        the whole certificate: sign it (deterministic, so identical to any earlier one) and
        let the core commit it. Never signs for a different block."""
        keys = self.chain.validator_keys
        rec = self.signed_state
        h = self.chain.height + 1
        if keys != [self.signer.public_key] or rec is None or rec.height != h:
            return
        digest = rec.signed("commit") or rec.signed("pp")
        if digest is None:
            return
        block_raw = None
        if rec.prepared is not None and rec.prepared.block_hash == digest:
            block_raw = rec.prepared.preprepare.block
        else:
            stored = self.store.get(WAL_PROPOSAL)
            if stored is not None:
                height, _view, raw = decode(stored)
                if height == h and Block.decode(raw).hash == digest:
                    block_raw = raw
        if block_raw is None:
            self.log.error("signed block %s at height %d but no longer have it; cannot finish it",
                           digest.hex(), h)
            return
        sig = self.signer.sign(commit_signing_bytes(self.chain.chain_id, rec.view, h, digest))
        cert = Certificate.build(h, rec.view, digest, {self.signer.public_key: sig})
        self.log.info("finishing block %d %s signed before a restart", h, digest.hex())
        self._local.append(ev.FetchedBlock(h, digest, block_raw, cert))

    # evidence ------------------------------------------------------------------------------------------
    def _evidence(self, e: fx.Evidence) -> None:
        self.evidence_count += 1
        record = {"kind": e.kind, "sender": e.sender.hex(), "msg_a": encode_message(e.msg_a).hex(),
                  "msg_b": encode_message(e.msg_b).hex(), "time_ms": self.clock_ms()}
        self.evidence.append(record)
        self.log.warning("evidence: %s by validator %s", e.kind, e.sender.hex())

    # reads for the API -------------------------------------------------------------------------------
    def primary(self) -> bytes | None:
        keys = self.chain.validator_keys
        if not keys:
            return None
        idx = primary_index(self.view, self.chain.height + 1, len(keys), self.chain.params.get("rotation_blocks", 30))
        return keys[idx]


__all__ = ["Runner", "WAL_SIGNED", "load_signed_state", "persist_signed_state", "consensus_config",
           "consensus_params", "default_replica_factory"]
