"""The runner with the real consensus core on a memory store: WAL before send, the
batching rule, empty blocks only as heartbeats when due, catch-up through fetched blocks,
evidence."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from consensus import effects as fx
from consensus.messages import Commit, PrePrepare, decode_message, encode_message, make_prepare
from genesis.testnet import make_testnet
from ledger import accounts
from ledger.store.memory import MemoryStore
from ledger.errors import BlockInvalid
from ledger.tx import make_tx

from node.mempool import Mempool
from node.runner import Runner, load_signed_state
from node.transport import NullTransport

# no interval heartbeats: the genesis time is years before the wall clock, so with the
# default interval every idle runner here would propose an empty block at once
NET = make_testnet(n_validators=1, params={"heartbeat_interval_ms": 0})
ADMIN = NET.admins["org1"]
OP2 = NET.operators["org2"]


def transfer(nonce, expiry=0):
    return make_tx(ADMIN, NET.doc["chain_id"], nonce, "transfer", {"to": OP2.address, "amount": 1}, expiry)


class RecordingTransport(NullTransport):
    """Checks, at the moment of every send, that the WAL already covers the message."""

    def __init__(self, store):
        super().__init__()
        self.store = store
        self.messages = []
        self.uncovered = []
        self.blocks: list[tuple[bytes, bytes]] = []

    def broadcast(self, message: bytes) -> None:
        msg = decode_message(message)
        rec = load_signed_state(self.store)
        phase = "pp" if isinstance(msg, PrePrepare) else "commit" if isinstance(msg, Commit) else "prepare"
        if rec is None or (rec.height, rec.view) != (msg.height, msg.view) or rec.signed(phase) != msg.block_hash:
            self.uncovered.append(msg)
        self.messages.append(msg)

    async def fetch_blocks(self, from_height, peer_key, limit):
        return self.blocks[from_height - 1:][:limit]


def make_runner(**kw):
    store = MemoryStore()
    chain = NET.chain(store)
    mp = Mempool(chain.chain_id, lambda a: (True, accounts.next_nonce(chain.state(), a)))
    transport = RecordingTransport(store)
    runner = Runner(chain, mp, NET.validators[0], transport, **kw)
    return runner, chain, mp, transport


async def until(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def test_signed_state_is_persisted_before_every_send():
    runner, chain, mp, tr = make_runner(block_interval_ms=10)
    runner.start()
    try:
        for n in range(3):
            mp.add(transfer(n))
            runner.notify_txs_added(1)
            await until(lambda: chain.height == n + 1)
        assert tr.messages and not tr.uncovered
    finally:
        await runner.stop()


async def test_block_cut_when_max_block_txs_ready_even_before_interval():
    runner, chain, mp, _ = make_runner(block_interval_ms=60_000, max_block_txs=5)
    runner.start()
    try:
        for n in range(4):
            mp.add(transfer(n))
        runner.notify_txs_added(4)
        await asyncio.sleep(0.2)
        assert chain.height == 0  # 4 < 5 and the interval is a minute
        mp.add(transfer(4))
        runner.notify_txs_added(1)
        await until(lambda: chain.height == 1)
        assert len(chain.get_block(1).txs) == 5 and len(mp) == 0
    finally:
        await runner.stop()


async def test_block_cut_after_interval_from_first_pending_tx():
    runner, chain, mp, _ = make_runner(block_interval_ms=300, max_block_txs=100)
    runner.start()
    try:
        t0 = time.monotonic()
        mp.add(transfer(0))
        runner.notify_txs_added(1)
        await asyncio.sleep(0.1)
        mp.add(transfer(1))
        runner.notify_txs_added(1)
        await until(lambda: chain.height == 1)
        elapsed = time.monotonic() - t0
        assert 0.28 <= elapsed < 1.5
        assert len(chain.get_block(1).txs) == 2
    finally:
        await runner.stop()


async def test_no_empty_block_unless_due_and_unincludable_txs_are_dropped():
    runner, chain, mp, _ = make_runner(block_interval_ms=20)
    runner.start()
    try:
        await asyncio.sleep(0.2)
        assert chain.height == 0
        mp.add(transfer(0))
        mp.add(make_tx(OP2, NET.doc["chain_id"], 0, "transfer", {"to": ADMIN.address, "amount": 1}))
        runner.notify_txs_added(2)
        await until(lambda: chain.height == 1)
        # a tx that can never be included (expired at height 1) yields no block and leaves the pool
        stale = make_tx(OP2, NET.doc["chain_id"], 1, "transfer", {"to": ADMIN.address, "amount": 1}, expiry=1)
        mp.add(stale)
        runner.notify_txs_added(1)
        await until(lambda: len(mp) == 0)
        await asyncio.sleep(0.1)
        assert chain.height == 1
    finally:
        await runner.stop()


async def test_catch_up_applies_fetched_blocks_in_order():
    # a reference chain with three certified blocks
    ref = NET.chain()
    cert = None
    for n in range(3):
        block, _ = ref.build_block([transfer(n)], time_ms=1_700_000_100_000 + n, view=0,
                                   proposer=NET.validators[0].public_key, last_cert=cert)
        cert = NET.certify(ref, block)
        ref.commit_block(block, cert, ref.validate_block(block))
    runner, chain, mp, tr = make_runner()
    tr.blocks = [(ref.get_block_raw(h), ref.get_cert(h).encode()) for h in (1, 2, 3)]
    mp.add(transfer(0))  # will be stale once block 1 is applied
    runner.start()
    try:
        runner.call_soon(lambda: runner._carry_out([fx.FetchBlocks(1, None)]))
        await until(lambda: chain.height == 3)
        assert [chain.get_block(h).hash for h in (1, 2, 3)] == [ref.get_block(h).hash for h in (1, 2, 3)]
        assert chain.head.state_root == ref.head.state_root
        assert len(mp) == 0
    finally:
        await runner.stop()


async def test_evidence_is_recorded():
    runner, chain, mp, _ = make_runner()
    a = make_prepare(NET.validators[0], chain.chain_id, 0, 1, b"\x01" * 32)
    b = make_prepare(NET.validators[0], chain.chain_id, 0, 1, b"\x02" * 32)
    runner.start()
    try:
        runner.call_soon(lambda: runner._carry_out([fx.Evidence("equivocation", a.sender, a, b)]))
        await until(lambda: runner.evidence_count == 1)
        rec = runner.evidence[0]
        assert rec["kind"] == "equivocation" and rec["sender"] == a.sender.hex()
    finally:
        await runner.stop()


async def test_consensus_bytes_with_bad_signature_are_dropped():
    runner, chain, mp, _ = make_runner()
    good = make_prepare(NET.validators[0], chain.chain_id, 0, 1, b"\x01" * 32)
    bad = replace(good, signature=bytes(64))
    runner.on_consensus_bytes(good.sender, encode_message(bad))
    runner.on_consensus_bytes(good.sender, b"\x00garbage")
    assert runner.queue.qsize() == 0
    runner.on_consensus_bytes(good.sender, encode_message(good))
    assert runner.queue.qsize() == 1


async def test_blocks_respect_max_block_bytes():
    size = len(transfer(0).raw)
    runner, chain, mp, _ = make_runner(block_interval_ms=10, max_block_bytes=3 * size + 10)
    for n in range(7):
        mp.add(transfer(n))
    runner.start()
    try:
        runner.notify_txs_added(7)
        await until(lambda: len(mp) == 0)
        sizes = [len(chain.get_block(h).txs) for h in range(1, chain.height + 1)]
        assert sizes == [3, 3, 1]
    finally:
        await runner.stop()


class _ScriptedReplica:
    """Stands in for the core: start() returns a fixed effect list."""

    def __init__(self, effects):
        self.effects = effects
        self.events = []

    def start(self):
        return list(self.effects)

    def on_event(self, event):
        self.events.append(event)
        return []


class _FailingStore(MemoryStore):
    def write(self, puts, *, sync=True):
        if any(k.startswith(b"w/") for k in puts):
            raise OSError("disk full")
        super().write(puts, sync=sync)


async def test_nothing_is_sent_when_the_wal_write_fails():
    from consensus.state import SignedState

    store = _FailingStore()
    chain = NET.chain(store)
    mp = Mempool(chain.chain_id, lambda a: (True, 0))
    msg = make_prepare(NET.validators[0], chain.chain_id, 0, 1, b"\x01" * 32)
    effects = [fx.PersistSigned(SignedState(1, 0, (("prepare", b"\x01" * 32),))), fx.Broadcast(msg)]
    transport = RecordingTransport(store)
    runner = Runner(chain, mp, NET.validators[0], transport, replica_factory=lambda rec, h: _ScriptedReplica(effects))
    runner.start()
    try:
        await asyncio.sleep(0.05)
        assert transport.messages == []
    finally:
        await runner.stop()

    ok_store = MemoryStore()
    chain = NET.chain(ok_store)
    transport = RecordingTransport(ok_store)
    runner = Runner(chain, mp, NET.validators[0], transport, replica_factory=lambda rec, h: _ScriptedReplica(effects))
    runner.start()
    try:
        await until(lambda: transport.messages)
        assert not transport.uncovered and load_signed_state(ok_store).signed("prepare") == b"\x01" * 32
    finally:
        await runner.stop()


async def test_restart_hands_the_persisted_state_to_the_core():
    from consensus.state import SignedState
    from node.runner import persist_signed_state

    store = MemoryStore()
    chain = NET.chain(store)
    rec = SignedState(1, 3, (("vc", b"\x07" * 32),), current_view=3, changing=True)
    persist_signed_state(store, rec)
    seen = {}

    def factory(signed, height):
        seen["args"] = (signed, height)
        return _ScriptedReplica([])

    runner = Runner(chain, Mempool(chain.chain_id, lambda a: (True, 0)), NET.validators[0], NullTransport(),
                    replica_factory=factory)
    assert seen["args"] == (rec, 1) and runner.view == 3


# -- failed durable writes halt the node; a refused commit is retried ----------------------

def fast_core(chain, signer):
    """The real core, with short timers (the chain parameter is 2 s)."""
    from consensus.core import Replica
    from consensus.state import ConsensusConfig

    def make(signed, height):
        return Replica(chain.chain_id, signer, tuple(chain.validator_keys), height,
                       ConsensusConfig(view_timeout_ms=50), signed)
    return make


async def test_failed_wal_write_halts_the_runner_and_nothing_more_reaches_the_core():
    from consensus.state import SignedState

    store = _FailingStore()
    chain = NET.chain(store)
    mp = Mempool(chain.chain_id, lambda a: (True, 0))
    msg = make_prepare(NET.validators[0], chain.chain_id, 0, 1, b"\x01" * 32)
    effects = [fx.PersistSigned(SignedState(1, 0, (("prepare", b"\x01" * 32),))), fx.Broadcast(msg)]
    transport = RecordingTransport(store)
    core = _ScriptedReplica(effects)
    runner = Runner(chain, mp, NET.validators[0], transport, replica_factory=lambda rec, h: core)
    task = runner.start()
    try:
        await asyncio.wait_for(asyncio.shield(task), 2)  # the runner ends by itself
        assert "WAL" in runner.failure and "disk full" in runner.failure
        runner.put(ev_message(msg))
        mp.add(transfer(0))
        runner.notify_txs_added(1)
        await asyncio.sleep(0.05)
        # the core's record moved on, but nothing was sent and no later event reached it
        assert transport.messages == [] and core.events == [] and runner.queue.qsize() == 0
    finally:
        await runner.stop()


def ev_message(msg):
    from consensus.events import MessageReceived
    return MessageReceived(msg)


class _BlockWriteFails(MemoryStore):
    def write(self, puts, *, sync=True):
        from ledger.store.base import PREFIX_BLOCK
        if any(k.startswith(PREFIX_BLOCK) for k in puts):
            raise OSError("I/O error")
        super().write(puts, sync=sync)


async def test_failed_block_write_halts_the_runner():
    store = _BlockWriteFails()
    chain = NET.chain(store)
    mp = Mempool(chain.chain_id, lambda a: (True, accounts.next_nonce(chain.state(), a)))
    runner = Runner(chain, mp, NET.validators[0], RecordingTransport(store), block_interval_ms=10,
                    replica_factory=fast_core(chain, NET.validators[0]))
    task = runner.start()
    try:
        mp.add(transfer(0))
        runner.notify_txs_added(1)
        await asyncio.wait_for(asyncio.shield(task), 2)
        assert "block 1" in runner.failure and chain.height == 0
    finally:
        await runner.stop()


async def test_a_commit_the_chain_refuses_is_retried_instead_of_wedging_the_replica():
    runner, chain, mp, _ = make_runner(block_interval_ms=10)
    runner.replica = fast_core(chain, NET.validators[0])(None, 1)
    real = chain.commit_block
    refusals = []

    def refuse_twice(block, cert, result):
        if len(refusals) < 2:
            refusals.append(block.height)
            raise BlockInvalid("simulated refusal", "test")
        real(block, cert, result)

    chain.commit_block = refuse_twice
    runner.start()
    try:
        mp.add(transfer(0))
        runner.notify_txs_added(1)
        await until(lambda: chain.height == 1)
        assert refusals == [1, 1] and runner.failure is None and len(mp) == 0
        mp.add(transfer(1))  # and it goes on normally
        runner.notify_txs_added(1)
        await until(lambda: chain.height == 2)
    finally:
        await runner.stop()


async def test_runner_reports_the_oldest_proposable_tx_and_regossips_it_on_request():
    store = MemoryStore()
    chain = NET.chain(store)
    mp = Mempool(chain.chain_id, lambda a: (True, accounts.next_nonce(chain.state(), a)))
    gossiped = []
    transport = RecordingTransport(store)
    transport.gossip_txs = lambda raws, again=False: gossiped.append((raws, again))
    core = _ScriptedReplica([])
    runner = Runner(chain, mp, NET.validators[0], transport, replica_factory=lambda rec, h: core)
    runner.start()
    try:
        gapped, first = transfer(1), transfer(0)
        mp.add(gapped)
        runner.notify_txs_added(1)
        await until(lambda: core.events)
        assert core.events[-1].oldest is None  # nonce 0 is missing: nothing any primary can propose
        mp.add(first)
        runner.notify_txs_added(1)
        await until(lambda: len(core.events) == 2)
        assert (core.events[-1].count, core.events[-1].oldest) == (2, first.hash)
        runner.call_soon(lambda: runner._carry_out([fx.ResendTx(first.hash), fx.ResendTx(b"\x00" * 32)]))
        await until(lambda: gossiped)
        await asyncio.sleep(0.02)
        assert gossiped == [([first.raw], True)]  # even if sent before; an id it no longer holds is ignored
    finally:
        await runner.stop()


def test_a_primary_waiting_its_block_interval_is_never_slow():
    from node.runner import consensus_config

    assert consensus_config({}).slow_proposal_ms == 1000  # half the 2 s view timeout
    assert consensus_config({"view_timeout_ms": 2000, "block_interval_ms": 800}).slow_proposal_ms == 1600


async def test_the_reported_view_follows_the_core_down_after_a_moot_view_change():
    runner, chain, mp, _ = make_runner()

    class Core(_ScriptedReplica):
        view = 0

    core = Core([])
    runner.replica = core
    runner.start()
    try:
        core.view = 2  # a lone view change ...
        runner.put(ev_message(make_prepare(NET.validators[0], chain.chain_id, 0, 1, b"\x01" * 32)))
        await until(lambda: runner.view == 2)
        core.view = 1  # ... became moot: rule F took the others' view
        runner.put(ev_message(make_prepare(NET.validators[0], chain.chain_id, 0, 1, b"\x02" * 32)))
        await until(lambda: runner.view == 1)
        assert runner.view_changes == 1
    finally:
        await runner.stop()


async def test_a_duplicate_node_key_stops_all_signing(caplog):
    """Told that another process runs with its key, the runner feeds the core nothing more:
    no proposal, no vote, no commit, however many transactions wait."""
    runner, chain, mp, tr = make_runner(block_interval_ms=10)
    runner.start()
    try:
        mp.add(transfer(0))
        runner.notify_txs_added(1)
        await until(lambda: chain.height == 1)  # signing works before
        sent = len(tr.messages)
        with caplog.at_level("ERROR"):
            runner.on_duplicate_key(b"\x01" * 32)
        assert runner.duplicate_key and any("stopped signing" in r.getMessage() for r in caplog.records)
        for n in (1, 2):
            mp.add(transfer(n))
            runner.notify_txs_added(1)
        await asyncio.sleep(0.5)
        assert chain.height == 1 and len(tr.messages) == sent
    finally:
        await runner.stop()


async def test_governed_consensus_params_reach_the_core_at_the_next_height_without_restart():
    """set_param of view_timeout_ms / rotation_blocks / block_interval_ms committed in block
    h is handed to the core with Committed(h) (the config for h+1); other fields of the
    core's config stay as the factory made them; a block without a change hands nothing."""
    from consensus.core import Replica
    from consensus.state import ConsensusConfig

    net = make_testnet(n_orgs=1, n_validators=1, params={"heartbeat_interval_ms": 0})  # one org: a proposal passes at once
    admin, signer = net.admins["org1"], net.validators[0]
    store = MemoryStore()
    chain = net.chain(store)
    mp = Mempool(chain.chain_id, lambda a: (True, accounts.next_nonce(chain.state(), a)))
    handed: list[tuple[int, object]] = []

    class Recording(Replica):
        def on_event(self, event):
            if type(event).__name__ == "Committed":
                handed.append((event.height, event.config))
            return super().on_event(event)

    base = ConsensusConfig(view_timeout_ms=50, max_buffered=7)
    runner = Runner(chain, mp, signer, RecordingTransport(store),
                    replica_factory=lambda rec, h: Recording(chain.chain_id, signer, tuple(chain.validator_keys), h,
                                                             base, rec))

    def send(nonce, kind, payload):
        mp.add(make_tx(admin, chain.chain_id, nonce, kind, payload))
        runner.notify_txs_added(1)

    runner.start()
    try:
        send(0, "propose", {"actions": [{"action": "set_param", "args": {"name": "view_timeout_ms", "value": 700}},
                                        {"action": "set_param", "args": {"name": "block_interval_ms", "value": 20}}]})
        await until(lambda: chain.height == 1)
        assert chain.params["view_timeout_ms"] == 700
        cfg = runner.replica.config
        assert (cfg.view_timeout_ms, cfg.rotation_blocks, cfg.slow_proposal_ms, cfg.max_buffered) == (700, 30, 350, 7)
        assert runner.block_interval_ms == 20  # read from the chain at every proposal
        send(1, "propose", {"action": "set_param", "args": {"name": "rotation_blocks", "value": 5}})
        await until(lambda: chain.height == 2)
        assert (runner.replica.config.view_timeout_ms, runner.replica.config.rotation_blocks) == (700, 5)
        send(2, "transfer", {"to": OP2.address, "amount": 1})
        await until(lambda: chain.height == 3)
        assert [(h, c is not None) for h, c in handed] == [(1, True), (2, True), (3, False)]
        assert runner.replica.config.rotation_blocks == 5
    finally:
        await runner.stop()


# -- heartbeat blocks: proposed when due (ledger/heartbeat.py), not before ----------------

HB_NET = make_testnet(n_validators=1)  # the default heartbeat_interval_ms, 60 s
HB_GENESIS = HB_NET.doc["genesis_time_ms"]


class FakeClock:
    def __init__(self, ms):
        self.ms = ms

    def __call__(self):
        return self.ms


def make_hb_runner(clock_ms):
    chain = HB_NET.chain(MemoryStore())
    mp = Mempool(chain.chain_id, lambda a: (True, accounts.next_nonce(chain.state(), a)))
    clock = FakeClock(clock_ms)
    runner = Runner(chain, mp, HB_NET.validators[0], RecordingTransport(chain.store), clock_ms=clock,
                    block_interval_ms=10)
    return runner, chain, mp, clock


async def settled(runner):
    """Wait until the runner has handled everything queued before this call."""
    done = asyncio.get_running_loop().create_future()
    runner.call_soon(lambda: done.set_result(None))
    await asyncio.wait_for(done, 5)


def timer_delay_s(handle):
    return handle.when() - asyncio.get_running_loop().time()


async def test_the_primary_proposes_a_heartbeat_when_due_and_not_before():
    from node.runner import _HeartbeatCheck

    runner, chain, mp, clock = make_hb_runner(HB_GENESIS + 1_000)
    runner.start()
    try:
        await settled(runner)
        assert chain.height == 0
        timer = runner._heartbeat_timer
        assert timer is not None and 50.0 < timer_delay_s(timer) <= 59.01  # due at genesis + 60 s, now + 59 s
        clock.ms = HB_GENESIS + 59_999  # a check just before: still nothing
        runner.queue.put_nowait(_HeartbeatCheck())
        await settled(runner)
        assert chain.height == 0 and runner._heartbeat_timer is not None
        clock.ms = HB_GENESIS + 60_000
        runner.queue.put_nowait(_HeartbeatCheck())
        await until(lambda: chain.height == 1)
        block = chain.get_block(1)
        assert block.txs == () and block.header.time_ms == HB_GENESIS + 60_000
        await settled(runner)
        # the first timer was cancelled by the checks; the next one is for parent + 60 s
        assert timer.cancelled()
        assert runner._heartbeat_timer is not None and 50.0 < timer_delay_s(runner._heartbeat_timer) <= 60.01
        clock.ms = HB_GENESIS + 60_001
        runner.queue.put_nowait(_HeartbeatCheck())
        await settled(runner)
        assert chain.height == 1
    finally:
        await runner.stop()
    assert runner._heartbeat_timer is None  # stop cancels it


async def test_a_due_market_transition_makes_the_primary_propose_at_its_time():
    from ledger.market.harness import MarketNet, listing_payload
    from node.runner import _HeartbeatCheck

    net = make_testnet(n_validators=1, params={"heartbeat_interval_ms": 0})
    chain = net.chain(MemoryStore())
    m = MarketNet(net, chain=chain)
    m.send(net.operators["org1"], "listing_create", listing_payload(units=2))
    lid = m.send(net.operators["org2"], "lease_open",
                 {"listing": 1, "units": 1, "hours": 1, "max_price": 1_000_000}).result["lease"]
    deadline = chain.next_heartbeat_ms()  # the lease's acceptance deadline
    mp = Mempool(chain.chain_id, lambda a: (True, accounts.next_nonce(chain.state(), a)))
    clock = FakeClock(deadline - 5_000)
    runner = Runner(chain, mp, net.validators[0], RecordingTransport(chain.store), clock_ms=clock)
    runner.last_cert = m.cert
    runner.start()
    try:
        await settled(runner)
        assert chain.height == 2 and 0.0 < timer_delay_s(runner._heartbeat_timer) <= 5.01
        clock.ms = deadline
        runner.queue.put_nowait(_HeartbeatCheck())
        await until(lambda: chain.height == 3)
        assert chain.get_block(3).txs == ()
        assert chain.state().get(b"mkt/ls/" + lid.to_bytes(8, "big"))["status"] == "expired"
        await settled(runner)
        assert runner._heartbeat_timer is None  # nothing more will ever be due: no timer at all
    finally:
        await runner.stop()


def test_consensus_config_from_chain_params():
    from consensus.state import ConsensusConfig
    from node.runner import consensus_config

    cfg = consensus_config({"view_timeout_ms": 120_000, "rotation_blocks": 0, "block_interval_ms": 40_000},
                           ConsensusConfig(max_future_heights=9))
    # a timeout above the default cap is not cut short; half the timeout beats 2 x interval here
    assert (cfg.view_timeout_ms, cfg.rotation_blocks, cfg.max_timeout_ms, cfg.max_future_heights) == \
        (120_000, 0, 120_000, 9)
    assert cfg.slow_proposal_ms == 80_000
    assert consensus_config({}) == consensus_config({"view_timeout_ms": 2000, "rotation_blocks": 30,
                                                     "block_interval_ms": 100})


async def test_when_every_ready_tx_is_excluded_a_due_heartbeat_is_still_proposed():
    runner, chain, mp, clock = make_hb_runner(HB_GENESIS + 1_000)
    runner.start()
    try:
        await settled(runner)
        idle_timer = runner._heartbeat_timer
        assert idle_timer is not None
        mp.add(make_tx(ADMIN, HB_NET.doc["chain_id"], 0, "transfer", {"to": OP2.address, "amount": 1}))
        runner.notify_txs_added(1)
        await until(lambda: chain.height == 1)
        assert idle_timer.cancelled()  # proposing a tx block cancels the idle heartbeat timer
        # a tx that expired at height 1, offered once a heartbeat is due: dropped, and the
        # block goes ahead without it
        clock.ms = HB_GENESIS + 1_000 + 60_000
        stale = make_tx(OP2, HB_NET.doc["chain_id"], 0, "transfer", {"to": ADMIN.address, "amount": 1}, expiry=1)
        mp.add(stale)
        runner.notify_txs_added(1)
        await until(lambda: chain.height == 2)
        assert chain.get_block(2).txs == () and len(mp) == 0
    finally:
        await runner.stop()


async def test_a_follower_never_proposes_a_heartbeat():
    """Only the primary with a pending request proposes; a replica only validates."""
    net = make_testnet(n_validators=4)
    chain = net.chain(MemoryStore())
    mp = Mempool(chain.chain_id, lambda a: (True, accounts.next_nonce(chain.state(), a)))
    keys = chain.validator_keys
    by_key = {s.public_key: s for s in net.validators}
    follower = by_key[keys[1]]  # view 0, height 1 is led by keys[0]
    tr = RecordingTransport(chain.store)
    runner = Runner(chain, mp, follower, tr, clock_ms=FakeClock(net.doc["genesis_time_ms"] + 10**9),
                    sync_interval_ms=0)
    runner.start()
    try:
        await settled(runner)
        assert runner._proposal is None and runner._heartbeat_timer is None
        assert not [m for m in tr.messages if isinstance(m, PrePrepare)]
    finally:
        await runner.stop()


def test_a_replica_votes_against_an_empty_block_that_is_not_due():
    """A byzantine primary's empty block before anything is due: the verdict is invalid
    (the core then asks for a view change, as for any invalid proposal); at the due time
    the same kind of block is valid. Decided from the header time, not this node's clock."""
    runner, chain, mp, clock = make_hb_runner(HB_GENESIS + 10**9)  # this node's clock: long past due
    proposer = HB_NET.validators[0].public_key
    early, _ = chain.build_block([], time_ms=HB_GENESIS + 59_999, view=0, proposer=proposer, last_cert=None)
    runner._validate(fx.ValidateBlock(0, 1, early.hash, early.encode()))
    verdict = runner._local.pop()
    assert not verdict.valid and verdict.reason.startswith("empty_block_not_due")
    due, _ = chain.build_block([], time_ms=HB_GENESIS + 60_000, view=0, proposer=proposer, last_cert=None)
    runner._validate(fx.ValidateBlock(0, 1, due.hash, due.encode()))
    assert runner._local.pop().valid
    assert chain.height == 0  # validation alone commits nothing


def test_the_first_block_of_a_view_entered_by_a_view_change_is_kept_small():
    """With 600 ready txs and max_block_txs 500: a proposal in the view of the last
    certificate takes 500; the first one after a view change takes at most
    FIRST_BLOCK_AFTER_VIEW_CHANGE_TXS (it commits quickly while every replica admits its
    backlog); the cap is the proposer's policy, not a validity rule."""
    from consensus import events as ev
    from ledger.block import Block
    from node.runner import FIRST_BLOCK_AFTER_VIEW_CHANGE_TXS

    sizes = {}
    for view in (0, 2):
        runner, chain, mp, _tr = make_runner(max_block_txs=500, block_interval_ms=10)
        for n in range(600):
            mp.add(transfer(n))
        runner._proposal = fx.RequestProposal(view, 1)
        runner._maybe_propose()
        ready = runner._local[-1]
        assert isinstance(ready, ev.ProposalReady) and ready.view == view
        sizes[view] = len(Block.decode(ready.block).txs)
    assert sizes == {0: 500, 2: FIRST_BLOCK_AFTER_VIEW_CHANGE_TXS} and FIRST_BLOCK_AFTER_VIEW_CHANGE_TXS < 500
