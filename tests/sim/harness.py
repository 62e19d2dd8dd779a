"""Deterministic simulator: N replicas in one process, one `random.Random(seed)`, an
integer-millisecond fake clock and a heap of (deliver_at, seq, dst, what).

The network drops, delays, duplicates and reorders messages and applies partitions;
nodes crash and restart from their persisted `SignedState`; byzantine validators
equivocate, send garbage, censor, lie about their committed height, swap block bytes
under a signed digest, or name another validator as a block's proposer; Twins run two
honest replicas with one key. Governance may change consensus parameters mid-run
(`Scenario.param_changes`): a change is a transaction, and the block that commits it sets
the configuration of every later height, handed to the core in `Committed.config` as the
node does; each replica's configuration, timers and leader schedule are checked against it.
Invariants are checked at every step that could break them (a commit, a send) and raise
`Violation`. Messages travel as bytes through `encode_message`/`decode_message` and are
checked with `check_message` (real Ed25519, results cached by message bytes), as the node
does; a message larger than a p2p frame (4 MiB) from an honest node is a violation.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field, replace

from consensus import proofs
from consensus.bookkeeping import MAX_COMMIT_KEYS, MAX_SEEN, weight
from consensus.core import Replica
from consensus.effects import (
    Broadcast, CommitBlock, Evidence, FetchBlocks, PersistSigned, RequestProposal, ScheduleTimeout,
    Send, ValidateBlock,
)
from consensus.events import (
    BlockVerdict, Committed, FetchedBlock, MessageReceived, PeerConnected, PendingTxs, ProposalReady, TimeoutFired,
)
from consensus.messages import (
    Commit, MessageRefused, NewView, Prepare, PreparedCert, PrePrepare, ViewChange, check_message,
    decode_message, encode_message, make_commit, make_prepare, make_preprepare, make_view_change, signed_bytes,
    verify_message,
)
from consensus.state import ConsensusConfig, Faults, SignedState, primary_index
from ledger.block import Certificate, quorum
from ledger.crypto import Signer
from ledger.encoding import decode, encode, sha256
from ledger.errors import BlockInvalid, EncodingError

CHAIN_ID = "cxl-sim"
VICTIM = b"victim"  # txs a "censor-tx" primary leaves out
SLOW_MARGIN_MS = 80  # how much earlier than the view timeout a "slow" primary proposes (network + validation fit)
MAX_BLOCK_TXS = 4
FETCH_BATCH = 8
MAX_FRAME = 4 * 1024 * 1024  # p2p/config.py max_frame_bytes
LIE = 1_000_000  # how far ahead a "liar" claims to have committed

_KEYS: list[Signer] = []
OUTSIDER = Signer(sha256(b"cxl-sim-outsider"))
_VERIFIED: dict[bytes, bool] = {}
_CERTS: dict[bytes, bool] = {}


def keys(n: int) -> list[Signer]:
    """Pre-generated, deterministic validator keys (generating Ed25519 keys is not free)."""
    while len(_KEYS) < n:
        _KEYS.append(Signer(sha256(b"cxl-sim-key-%d" % len(_KEYS))))
    return _KEYS[:n]


def block_id(validators: tuple[bytes, ...], rotation_blocks: int):
    """The simulator's blocks are [height, view, proposer, time, txs(, padding)] and hash
    with sha256. Like the node, refuse a block whose proposer is not the primary of the
    (view, height) it names."""
    def digest(block: bytes) -> bytes:
        try:
            h, view, proposer = decode(block)[:3]
            primary = validators[primary_index(view, h, len(validators), rotation_blocks)]
        except (EncodingError, ValueError, TypeError, IndexError) as exc:
            raise ValueError(f"not a block: {exc}") from None
        if proposer != primary:
            raise ValueError("the block names a proposer that is not the primary of its view")
        return sha256(block)
    return digest


class _AnyDigest:
    """Equal to every digest: a receiver that does not bind block bytes to their digest
    (the node before issue 9), for `Scenario.bind_blocks = False`."""

    def __eq__(self, other) -> bool:
        return True

    def __ne__(self, other) -> bool:
        return False

    __hash__ = None


def verified(data: bytes, msg, validators: tuple[bytes, ...], rotation_blocks: int, bind: bool = True) -> bool:
    key = (b"b" if bind else b"u") + b"%d:" % rotation_blocks + data + b"".join(validators)
    ok = _VERIFIED.get(key)
    if ok is None:
        if len(_VERIFIED) > 200_000:
            _VERIFIED.clear()
        ids = block_id(validators, rotation_blocks) if bind else (lambda raw: _AnyDigest())
        ok = _VERIFIED[key] = verify_message(msg, CHAIN_ID, validators, ids)
    return ok


def cert_ok(cert: Certificate, validators: tuple[bytes, ...]) -> bool:
    key = cert.encode() + b"".join(validators)
    ok = _CERTS.get(key)
    if ok is None:
        try:
            cert.verify(CHAIN_ID, list(validators))
            ok = True
        except BlockInvalid:
            ok = False
        if len(_CERTS) > 50_000:
            _CERTS.clear()
        _CERTS[key] = ok
    return ok


def signature_count(msg) -> int:
    if isinstance(msg, ViewChange):
        return 1 + (0 if msg.prepared is None else 1 + len(msg.prepared.prepares))
    if isinstance(msg, NewView):
        return 1 + (msg.preprepare is not None) + sum(signature_count(v) for v in msg.view_changes)
    return 1


class Violation(Exception):
    def __init__(self, kind: str, detail: str, at_ms: int):
        super().__init__(f"{kind} at t={at_ms}ms: {detail}")
        self.kind, self.detail, self.at_ms = kind, detail, at_ms


@dataclass
class Scenario:
    seed: int
    n: int
    profile: str
    chaos_ms: int = 3000  # adversarial phase; the network heals after it
    bound_ms: int = 30_000  # after healing, every tx must be committed everywhere within this
    txs: int = 6
    drop: float = 0.0
    drop_commits: float = 0.0  # extra loss for Commit messages only (a selective network)
    crash_on_commit: float = 0.0  # chance that a replica crashes right after it commits
    dup: float = 0.0
    delay: tuple[int, int] = (1, 20)
    partitions: list = field(default_factory=list)  # [(at_ms, groups of instance ids | None)]
    crashes: list = field(default_factory=list)  # [(at_ms, instance id, "crash"|"restart")]
    byzantine: dict = field(default_factory=dict)  # key index -> a behaviour in BEHAVIOURS
    block_pad: int = 0  # bytes of padding in every proposed block (to test frame limits)
    bind_blocks: bool = True  # off: receivers check signatures only, not that block bytes hash to the digest
    check_certificates: bool = True  # off only to show other invariants catch a quorum bug too
    config: ConsensusConfig = ConsensusConfig(view_timeout_ms=300, rotation_blocks=3, max_timeout_ms=2400)
    faults: Faults = Faults()
    reconnect: bool = False  # on: a link restored by a partition change or the heal feeds PeerConnected
    # [(submit at ms, {ConsensusConfig field: value})]: governance changes of the consensus
    # parameters, each a transaction; from the height after the block that commits it on
    param_changes: list = field(default_factory=list)
    stale_config: tuple = ()  # instance ids never handed a new config (a node without live params: a bug)
    # Links as TCP streams (issue 13.2): with bandwidth > 0 (bytes per ms, each directed link)
    # a message leaves after the ones before it on its link and takes its size / bandwidth
    # to send, plus `delay`; with chance stall[0] the link first sits still for a time drawn
    # from stall[1:] ms (retransmission backoff after a loss). Order per link is kept. Off
    # (0): every message travels on its own, as before. Both end at the heal.
    bandwidth: int = 0
    stall: tuple = (0.0, 0, 0)


@dataclass
class Stats:
    messages: int = 0
    signatures: int = 0  # signatures made by validators
    verifications: int = 0  # signatures checked by receivers (as an uncached node would)
    blocks: int = 0
    events: int = 0
    refused: int = 0  # messages receivers refused (check_message)
    heal_commit_ms: int | None = None  # sim time from the heal to the first honest commit after it


BEHAVIOURS = {
    "equivocate": "proposes two blocks at one position; prepares and commits everything",
    "garbage": "random bytes, broken signatures, outsiders, far-future and stale messages, bad certificates",
    "censor": "never proposes",
    "twin": "a second honest replica with the same key",
    "liar": "never proposes, and claims in every ViewChange to have committed LIE heights more",
    "swap": "as primary sends one peer other bytes under its signed digest, withholds its commits, "
            "and puts other bytes in its ViewChanges' prepared certificates",
    "impostor": "proposes blocks that name another validator as their proposer",
    "flood": "sends one peer bursts of validly signed junk: Commits at many views, ViewChanges at huge "
             "views, future PrePrepares with big blocks, old-height messages at ever higher views",
    "censor-tx": "proposes on time, but never the victims' transactions",
    "slow": "proposes each block just before the progress timer would fire",
    "drip": "proposes on time, but sends the block to all peers but one just before the progress timer would "
            "fire, never to the last one, and withholds its Commits (issue 13.2: visible progress restarts "
            "the timer, a bounded number of times)",
}


class Node:
    def __init__(self, sim: "Sim", ident: int, key_index: int, behaviour: str | None):
        self.sim, self.id, self.key_index, self.behaviour = sim, ident, key_index, behaviour
        self.signer = sim.signers[key_index]
        self.key = self.signer.public_key
        self.honest = behaviour is None
        self.persisted: bytes | None = None
        self.chain: list[tuple[bytes, bytes, Certificate]] = []
        self.roots: list[bytes] = [b"\x00" * 32]
        self.committed: set[bytes] = set()
        self.crashed = False
        self.incarnation = 0
        self.lied = 0  # "liar": highest view it has lied about
        self.flood_views = 0  # "flood": ViewChange views used so far
        # configs[h-1]: the configuration deciding height h, from this node's chain
        self.configs: list[ConsensusConfig] = [sim.sc.config]
        self.boot()

    def boot(self) -> None:
        sim = self.sim
        state = None if self.persisted is None else SignedState.decode(self.persisted)
        self.replica = Replica(CHAIN_ID, self.signer, sim.validators, len(self.chain) + 1, self.configs[-1],
                               state, sim.sc.faults, self.chain[-1][2] if self.chain else None)
        self.request = None
        self.reported_pending = None
        self.run(self.replica.start())
        self.report_pending()

    def config_at(self, height: int) -> ConsensusConfig:
        """The configuration deciding `height` (the current one for heights not reached)."""
        return self.configs[min(max(height, 1), len(self.configs)) - 1]

    @property
    def rotation(self) -> int:
        """R of the height this node decides: what its admission check uses, as the node's does."""
        return self.configs[-1].rotation_blocks

    def peers(self) -> list[int]:
        """Every instance of every other validator (both twins of a twinned key)."""
        return [x.id for x in self.sim.nodes if x.key != self.key]

    # -- driving the replica ---------------------------------------------------------

    def feed(self, event) -> None:
        if not self.crashed:
            self.run(self.replica.on_event(event))
            self.report_pending()

    def pending(self) -> list[bytes]:
        return [t for t in self.sim.submitted if t not in self.committed]

    def report_pending(self) -> None:
        pending = self.pending()
        report = (len(pending), pending[0] if pending else None)  # the oldest: every tx is proposable
        if report != self.reported_pending:
            self.reported_pending = report
            self.run(self.replica.on_event(PendingTxs(*report)))

    def run(self, effects: list) -> None:
        sim = self.sim
        for eff in effects:
            if isinstance(eff, PersistSigned):
                if self.honest:
                    sim.check_persisted(self, self.persisted, eff.record)
                self.persisted = eff.record.encode()
            elif isinstance(eff, (Broadcast, Send)):
                self.send_msg(eff.msg, None if isinstance(eff, Broadcast) else eff.to)
            elif isinstance(eff, ScheduleTimeout):
                if self.honest:
                    sim.check_timer(self, eff)
                sim.schedule(eff.after_ms, self.id, ("timer", self.incarnation,
                                                     TimeoutFired(eff.kind, eff.view, eff.height, eff.gen)))
            elif isinstance(eff, ValidateBlock):
                verdict = self.validate(eff.height, eff.block_hash, eff.block)
                sim.schedule(sim.rng.randint(0, 2), self.id, ("local", self.incarnation,
                                                              BlockVerdict(eff.block_hash, verdict, "")))
            elif isinstance(eff, RequestProposal):
                self.request = (eff.view, eff.height)
                self.try_propose()
            elif isinstance(eff, CommitBlock):
                self.commit(eff)
            elif isinstance(eff, FetchBlocks):
                targets = sim.instances_of(eff.peer) if eff.peer is not None else []
                dst = sim.rng.choice(targets or self.peers())
                sim.net_send(self.id, dst, ("fetch_req", eff.from_height))
            elif isinstance(eff, Evidence):
                sim.evidence.append((self.id, eff.sender))
                if self.honest and eff.sender in sim.honest_keys:
                    raise Violation("false-evidence", f"node {self.id} accused honest {eff.sender.hex()[:8]}",
                                    sim.now)

    def send_msg(self, msg, to: bytes | None) -> None:
        sim = self.sim
        if msg.sender == self.key:
            sim.stats.signatures += 2 if isinstance(msg, NewView) and msg.preprepare else 1
            if self.honest:
                sim.check_signed(self, msg)
        if self.behaviour == "equivocate" and isinstance(msg, PrePrepare) and to is None:
            self.equivocate(msg)
            return
        if self.behaviour == "drip" and (isinstance(msg, Commit) or isinstance(msg, PrePrepare) and to is None):
            self.drip(msg)
            return
        if self.behaviour in ("liar", "swap"):
            msg = self.distort(msg, to)
            if msg is None:
                return
        data = encode_message(msg)
        if self.honest:
            sim.check_sent(self, msg, data)
        dsts = sim.instances_of(to) if to is not None else self.peers()
        for dst in dsts:
            sim.net_send(self.id, dst, ("msg", data))
        if self.behaviour == "flood":
            self.flood(msg)
        if self.behaviour == "garbage" and sim.rng.random() < 0.5:
            self.garbage(msg)

    # -- the application: blocks, validation, commits ------------------------------

    def try_propose(self) -> None:
        if self.request is None or self.behaviour == "censor" or self.crashed:
            return
        txs = self.pending()
        if self.behaviour == "censor-tx":  # proposes, but never a victim's transactions
            txs = [t for t in txs if not t.startswith(VICTIM)]
        txs = txs[:MAX_BLOCK_TXS]
        if not txs or self.behaviour == "liar":
            return
        view, height = self.request
        self.request = None
        proposer = self.key
        if self.behaviour == "impostor":
            proposer = next(v for v in self.sim.validators if v != self.key)
        fields = [height, view, proposer, self.sim.now, txs]
        if self.sim.sc.block_pad:
            fields.append(b"\x00" * self.sim.sc.block_pad)
        block = encode(fields)
        if self.behaviour == "slow":  # proposes just before the progress timer would fire
            self.sim.schedule(self.configs[-1].view_timeout_ms - SLOW_MARGIN_MS, self.id,
                              ("local", self.incarnation, ProposalReady(view, height, sha256(block), block)))
            return
        self.feed(ProposalReady(view, height, sha256(block), block))

    def validate(self, height: int, block_hash: bytes, block: bytes) -> bool:
        if sha256(block) != block_hash:
            return False
        try:
            h, _view, _proposer, _t, txs = decode(block)[:5]
        except (EncodingError, ValueError, TypeError):
            return False
        return (h == height == len(self.chain) + 1 and 0 < len(txs) == len(set(txs))
                and all(t in self.sim.submitted and t not in self.committed for t in txs))

    def commit(self, eff: CommitBlock) -> None:
        sim = self.sim
        where = f"node {self.id} height {eff.height}"
        if eff.height != len(self.chain) + 1:
            raise Violation("order", f"{where}: chain is at {len(self.chain)}", sim.now)
        if eff.certificate.block_hash != eff.block_hash or (
                sim.sc.check_certificates and not cert_ok(eff.certificate, sim.validators)):
            raise Violation("validity", f"{where}: certificate does not verify "
                            f"({len(eff.certificate.signatures)} signers, {sim.quorum} needed)", sim.now)
        if sha256(eff.block) != eff.block_hash or not self.validate(eff.height, eff.block_hash, eff.block):
            raise Violation("validity", f"{where}: block holds unsubmitted or repeated txs", sim.now)
        h, view, proposer, _t, txs = decode(eff.block)[:5]
        if proposer != sim.validators[primary_index(view, h, sim.sc.n, self.config_at(h).rotation_blocks)]:
            raise Violation("proposer", f"{where}: the block names a proposer that was not the primary of "
                            f"view {view}", sim.now)
        self.chain.append((eff.block_hash, eff.block, eff.certificate))
        self.committed.update(txs)
        self.roots.append(sha256(self.roots[-1] + encode(txs)))
        if self.honest:
            sim.check_agreement(self, eff.height)
            sim.check_bounded(self)
        if not sim.healed and sim.rng.random() < sim.sc.crash_on_commit:
            sim.schedule(0, self.id, ("crash",))
            sim.schedule(sim.rng.randint(100, 1500), self.id, ("restart",))
        self.reported_pending = None  # a node reports its mempool after every commit
        config = self.configs[-1]
        for tx in txs:
            if tx in sim.changes:
                config = replace(config, **sim.changes[tx])
        changed = config != self.configs[-1]
        self.configs.append(config)
        if self.id in sim.sc.stale_config:
            changed = False
        self.feed(Committed(eff.height, eff.block_hash, sim.validators, eff.certificate,
                            config if changed else None))
        if self.honest and not self.crashed and self.replica.height == len(self.chain) + 1:
            sim.check_config(self)

    # -- byzantine behaviours --------------------------------------------------------

    def equivocate(self, pp: PrePrepare) -> None:
        """Send one block to half the peers and another to the rest."""
        sim = self.sim
        fields = decode(pp.block)  # [height, view, proposer, time, txs(, padding)]
        fields[3], fields[4] = fields[3] + 1, list(reversed(fields[4]))
        other = encode(fields)
        alt = make_preprepare(self.signer, CHAIN_ID, pp.view, pp.height, sha256(other), other)
        peers = self.peers()
        sim.rng.shuffle(peers)
        half = len(peers) // 2
        for i, dst in enumerate(peers):
            sim.net_send(self.id, dst, ("msg", encode_message(pp if i < half else alt)))

    def drip(self, msg) -> None:
        if isinstance(msg, Commit):
            return  # withheld: the honest three must all commit, and one never gets the block
        data = encode_message(msg)
        late = self.configs[-1].view_timeout_ms - SLOW_MARGIN_MS
        for dst in self.peers()[:-1]:
            self.sim.schedule(late, -1, ("send", self.id, dst, ("msg", data)))

    def distort(self, msg, to: bytes | None):
        """"liar" and "swap": the message to send instead of `msg` (None: send nothing)."""
        sim = self.sim
        if self.behaviour == "liar":
            if isinstance(msg, ViewChange) and msg.prepared is None:
                return self.lie(msg.new_view, msg.last_committed_height)
            return msg
        if isinstance(msg, Commit):
            return None  # withhold its own and the ones it could hand on: the others need the victim
        if isinstance(msg, ViewChange) and msg.prepared is not None:
            pp = msg.prepared.preprepare
            return replace(msg, prepared=PreparedCert(replace(pp, block=_other_bytes(pp.block)), msg.prepared.prepares))
        if isinstance(msg, PrePrepare) and to is None:
            peers = self.peers()
            victim = peers[pp_victim(msg, len(peers))]
            for dst in peers:
                bad = replace(msg, block=_other_bytes(msg.block)) if dst == victim else msg
                sim.net_send(self.id, dst, ("msg", encode_message(bad)))
            return None
        return msg

    def lie(self, view: int, committed: int) -> ViewChange:
        """A ViewChange for `view` claiming LIE more committed heights, sent as soon as
        anyone asks for `view` (so it is there before the new primary has a quorum)."""
        vc = make_view_change(self.signer, CHAIN_ID, view, committed + LIE, None)
        if view > self.lied:
            self.lied = view
            for dst in self.peers():
                self.sim.net_send(self.id, dst, ("msg", encode_message(vc)))
        return vc

    def flood(self, msg) -> None:
        """A burst of validly signed junk to one peer; what it may cost the victim is
        bounded (Sim.check_bounded)."""
        sim, rng = self.sim, self.sim.rng
        dst = rng.choice(self.peers())
        h = len(self.chain) + 1
        n, rot = sim.sc.n, self.rotation
        base = getattr(msg, "view", 0) or 0
        junk = [make_commit(self.signer, CHAIN_ID, base + k, h, rng.randbytes(32)) for k in range(20)]
        self.flood_views += 5
        junk += [make_view_change(self.signer, CHAIN_ID, 10**6 + self.flood_views + k, h - 1, None) for k in range(5)]
        mine = [v for v in range(base, base + 4 * n) if sim.validators[primary_index(v, h + 1, n, rot)] == self.key]
        for v in mine[:3]:  # future blocks it may legitimately propose: buffered within its quota
            block = encode([h + 1, v, self.key, sim.now, [], rng.randbytes(64) * 3072])
            junk.append(make_preprepare(self.signer, CHAIN_ID, v, h + 1, sha256(block), block))
        if h > 2:  # "I am at height 1, in ever higher views": asks for help again and again
            junk += [make_prepare(self.signer, CHAIN_ID, base + k, 1, rng.randbytes(32)) for k in range(5)]
        for m in junk:
            sim.net_send(self.id, dst, ("msg", encode_message(m)))

    def vote_everything(self, msg) -> None:
        """An equivocator also prepares and commits every block it is shown."""
        if isinstance(msg, PrePrepare):
            for make in (make_prepare, make_commit):
                vote = make(self.signer, CHAIN_ID, msg.view, msg.height, msg.block_hash)
                for dst in self.peers():
                    self.sim.net_send(self.id, dst, ("msg", encode_message(vote)))

    def garbage(self, msg) -> None:
        sim, rng = self.sim, self.sim.rng
        dst = rng.choice(self.peers())
        height = getattr(msg, "height", 1)
        choice = rng.randrange(6)
        if choice == 0:
            data = rng.randbytes(rng.randint(0, 80))
        elif choice == 1:  # a broken signature
            data = encode_message(msg)
            data = data[:-1] + bytes([data[-1] ^ 1])
        elif choice == 2:  # signed by a key that is not a validator
            data = encode_message(make_prepare(OUTSIDER, CHAIN_ID, 0, height, rng.randbytes(32)))
        elif choice == 3:  # far-future height, validly signed
            data = encode_message(make_prepare(self.signer, CHAIN_ID, 0, height + 10_000, rng.randbytes(32)))
        elif choice == 4:  # stale view, validly signed
            data = encode_message(make_commit(self.signer, CHAIN_ID, 0, height, rng.randbytes(32)))
        else:  # a well-formed message with a wrong tag inside
            data = encode([9, 1, 2])
        sim.net_send(self.id, dst, ("msg", data))

    # -- network input -----------------------------------------------------------------

    def receive(self, src: int, what) -> None:
        sim = self.sim
        kind = what[0]
        if kind == "msg":
            try:
                msg = decode_message(what[1])
            except EncodingError:
                return
            sim.stats.verifications += signature_count(msg)
            if not verified(what[1], msg, sim.validators, self.rotation, sim.sc.bind_blocks):
                sim.stats.refused += 1
                return
            if self.behaviour == "equivocate":
                self.vote_everything(msg)
            if self.behaviour == "liar" and isinstance(msg, (ViewChange, NewView)):
                view = msg.new_view if isinstance(msg, ViewChange) else msg.view
                self.lie(view, len(self.chain))
            self.feed(MessageReceived(msg))
        elif kind == "fetch_req":
            start = what[1]
            blocks = self.chain[start - 1: start - 1 + FETCH_BATCH]
            if blocks and self.behaviour != "swap":  # its certificates would carry its withheld commit
                if self.behaviour == "garbage":  # hand out a certificate with a signature missing
                    hsh, blk, cert = blocks[0]
                    blocks = [(hsh, blk, Certificate(cert.height, cert.view, cert.block_hash, cert.signatures[1:]))]
                sim.net_send(self.id, src, ("fetch_resp", start, blocks))
        elif kind == "fetch_resp":
            for i, (hsh, blk, cert) in enumerate(what[2]):
                if sha256(blk) == hsh:  # the node hashes fetched blocks itself
                    self.feed(FetchedBlock(what[1] + i, hsh, blk, cert))


def _other_bytes(block: bytes) -> bytes:
    """Another well-formed block for the same slot (so only its hash gives it away)."""
    fields = decode(block)
    fields[3] += 1
    return encode(fields)


def pp_victim(pp: PrePrepare, peers: int) -> int:
    return (pp.view + pp.height) % peers


class Sim:
    def __init__(self, sc: Scenario, rng: random.Random | None = None):
        self.sc = sc
        self.rng = rng if rng is not None else random.Random(sc.seed)
        self.now = 0
        self.heap: list = []
        self.seq = 0
        self.stats = Stats()
        self.signers = keys(sc.n)
        order = list(range(sc.n))
        self.rng.shuffle(order)  # the leader schedule: who is primary of which view
        self.signers = [self.signers[i] for i in order]
        self.validators = tuple(s.public_key for s in self.signers)
        self.quorum = quorum(sc.n)
        self.honest_keys = {self.validators[i] for i in range(sc.n) if i not in sc.byzantine}
        self.submitted: dict[bytes, int] = {}
        self.changes = {b"param-%d" % i: dict(change) for i, (_, change) in enumerate(sc.param_changes)}
        self.decided: dict[int, tuple[bytes, bytes]] = {}
        self.signed: dict[tuple, bytes] = {}
        self.evidence: list = []
        self.groups: list | None = None
        self.healed = False
        self.drop, self.dup, self.drop_commits = sc.drop, sc.dup, sc.drop_commits
        self.delay = sc.delay
        self.bandwidth, self.stall = sc.bandwidth, sc.stall
        self.link_free: dict[tuple[int, int], int] = {}  # stream links: when each is free to send again
        self.link_last: dict[tuple[int, int], int] = {}  # and when its last message arrives
        self.nodes: list[Node] = []
        for i in range(sc.n):
            self.nodes.append(Node(self, i, i, sc.byzantine.get(i)))
        for i, b in sorted(sc.byzantine.items()):
            if b == "twin":
                self.nodes.append(Node(self, len(self.nodes), i, "twin"))

    # -- plumbing ------------------------------------------------------------------------

    def schedule(self, after: int, dst: int, what) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (self.now + after, self.seq, dst, what))

    def instances_of(self, key: bytes) -> list[int]:
        return [x.id for x in self.nodes if x.key == key]

    def net_send(self, src: int, dst: int, what) -> None:
        if what[0] == "msg":
            self.stats.messages += 1
        if self.groups is not None and not any(src in g and dst in g for g in self.groups):
            return
        if self.rng.random() < self.drop:
            return
        if self.drop_commits and what[0] == "msg" and what[1][1:2] == b"\x03" and self.rng.random() < self.drop_commits:
            return
        if self.bandwidth:
            self.stream_send(src, dst, what)
            return
        copies = 2 if self.rng.random() < self.dup else 1
        for _ in range(copies):
            self.schedule(self.rng.randint(*self.delay), dst, ("net", src, what))

    def stream_send(self, src: int, dst: int, what) -> None:
        if what[0] == "msg":
            size = len(what[1])
        elif what[0] == "fetch_resp":
            size = sum(len(blk) + 200 for _, blk, _ in what[2])
        else:
            size = 64
        link = (src, dst)
        start = max(self.now, self.link_free.get(link, 0))
        if self.stall[0] and self.rng.random() < self.stall[0]:
            start += self.rng.randint(self.stall[1], self.stall[2])
        done = start + size // self.bandwidth
        self.link_free[link] = done
        at = max(done + self.rng.randint(*self.delay), self.link_last.get(link, 0))
        self.link_last[link] = at
        self.schedule(at - self.now, dst, ("net", src, what))

    # -- invariants --------------------------------------------------------------------

    def check_signed(self, node: Node, msg) -> None:
        """No honest validator signs two different things at one (view, height, phase)."""
        for m in ([msg, msg.preprepare] if isinstance(msg, NewView) and msg.preprepare else [msg]):
            if isinstance(m, (PrePrepare, Prepare, Commit)):
                pos, digest = (type(m).__name__, m.view, m.height), m.block_hash
            elif isinstance(m, ViewChange):
                pos, digest = ("vc", m.new_view, m.last_committed_height), sha256(signed_bytes(m, CHAIN_ID))
            else:
                pos, digest = ("nv", m.view, m.height), sha256(signed_bytes(m, CHAIN_ID))
            key = (node.key,) + pos
            prev = self.signed.setdefault(key, digest)
            if prev != digest:
                raise Violation("double-sign", f"node {node.id} signed two different {pos}", self.now)

    def check_sent(self, node: Node, msg, data: bytes) -> None:
        """What an honest node sends fits one p2p frame, and its proofs hold: every
        signature verifies, every block carried hashes to its digest, and a ViewChange or
        NewView passes the checks a receiver makes."""
        if len(data) > MAX_FRAME:
            raise Violation("frame", f"node {node.id} sent a {type(msg).__name__} of {len(data)} bytes", self.now)
        if not isinstance(msg, (ViewChange, NewView, PrePrepare)):
            return
        height = msg.last_committed_height + 1 if isinstance(msg, ViewChange) else msg.height
        R = node.config_at(height).rotation_blocks  # the schedule of the height the message is about
        try:
            if not verified(data, msg, self.validators, R):  # cached: the receivers ask the same
                check_message(msg, CHAIN_ID, self.validators, block_id(self.validators, R))
        except MessageRefused as exc:
            raise Violation("bad-proof", f"node {node.id} sent a {type(msg).__name__} others refuse: {exc}",
                            self.now) from None
        if isinstance(msg, ViewChange):
            ok = proofs.view_change_ok(msg, self.validators, R)
        elif isinstance(msg, NewView):
            ok = proofs.new_view_ok(msg, self.validators, R, self.quorum, self.sc.faults.ignore_prepared,
                                    self.sc.faults.unscoped_new_view)[0]
        else:
            ok = True
        if not ok:
            raise Violation("bad-proof", f"node {node.id} sent a {type(msg).__name__} that fails its proof check",
                            self.now)

    def check_config(self, node: Node) -> None:
        """After a commit the replica runs with the configuration the committed chain sets
        for its next height: every replica switches at the same height."""
        if node.replica.config != node.configs[-1]:
            raise Violation("config", f"node {node.id} at height {node.replica.height} runs with "
                            f"{node.replica.config}, the chain says {node.configs[-1]}", self.now)

    def check_timer(self, node: Node, eff: ScheduleTimeout) -> None:
        """Progress and view-change timers at the replica's height last the view timeout of
        that height, doubled per failed view and capped."""
        if eff.kind not in ("progress", "viewchange") or eff.height != len(node.chain) + 1:
            return
        cfg = node.config_at(eff.height)
        if eff.after_ms not in {min(cfg.view_timeout_ms << k, cfg.max_timeout_ms) for k in range(31)}:
            raise Violation("timer", f"node {node.id} armed a {eff.kind} timer of {eff.after_ms}ms at height "
                            f"{eff.height}, where the view timeout is {cfg.view_timeout_ms}ms", self.now)

    def check_persisted(self, node: Node, old: bytes | None, new: SignedState) -> None:
        """An honest signing record only moves forward: its position (height, view) never
        goes down, and at one position nothing signed is dropped or changed."""
        if old is None:
            return
        prev = SignedState.decode(old)
        if (new.height, new.view) < (prev.height, prev.view) or (
                (new.height, new.view) == (prev.height, prev.view) and not set(prev.phases) <= set(new.phases)):
            raise Violation("signing-position", f"node {node.id} record went from ({prev.height}, {prev.view}) "
                            f"{prev.phases} to ({new.height}, {new.view}) {new.phases}", self.now)

    def check_bounded(self, node: Node) -> None:
        """What a replica keeps of others' messages stays within its per-sender bounds,
        whatever the byzantine validators send."""
        r, n, cfg = node.replica, self.sc.n, self.sc.config
        sizes = {"commits": (r.commits.count(), n * MAX_COMMIT_KEYS),
                 "seen": (len(r.seen), n * 5 * MAX_SEEN),
                 "future": (len(r.future), n * cfg.max_buffered),
                 "future bytes": (sum(weight(m) for m in r.future), n * cfg.max_buffered_bytes),
                 "helped": (len(r.helped), 2 * n)}
        for what, (size, bound) in sizes.items():
            if size > bound:
                raise Violation("bounded", f"node {node.id} holds {size} {what}, bound {bound}", self.now)

    def check_agreement(self, node: Node, height: int) -> None:
        block_hash, root = node.chain[-1][0], node.roots[-1]
        first = self.decided.setdefault(height, (block_hash, root))
        if first[0] != block_hash:
            raise Violation("agreement", f"node {node.id} committed a different block at height {height}",
                            self.now)
        if first[1] != root:
            raise Violation("state-root", f"node {node.id} state root differs at height {height}", self.now)

    def honest_done(self) -> bool:
        return all(x.crashed or len(x.committed) >= len(self.submitted)
                   for x in self.nodes if x.honest) and not any(x.crashed for x in self.nodes if x.honest)

    # -- the run -------------------------------------------------------------------------

    def submit(self, tx: bytes) -> None:
        self.submitted[tx] = self.now
        for x in self.nodes:
            if not x.crashed:
                x.report_pending()
                x.try_propose()

    def run(self) -> Stats:
        sc = self.sc
        for at, groups in sc.partitions:
            self.schedule(at, -1, ("partition", groups))
        for at, ident, what in sc.crashes:
            self.schedule(at, ident, (what,))
        for i in range(sc.txs):
            victim = sc.profile == "censor-tx" and i % 2  # half of them, for a censoring primary to leave out
            self.schedule(self.rng.randint(0, sc.chaos_ms), -1, ("submit", (VICTIM + b"-%d" if victim else b"tx-%d") % i))
        for i, (at, _) in enumerate(sc.param_changes):
            self.schedule(at, -1, ("submit", b"param-%d" % i))
        self.schedule(sc.chaos_ms, -1, ("heal",))
        self.healed = False
        self.healed_at, self.heal_height = 0, 0
        deadline = sc.chaos_ms + sc.bound_ms
        while self.heap:
            at, _, dst, what = heapq.heappop(self.heap)
            self.now = at
            self.stats.events += 1
            if at > deadline:
                break
            kind = what[0]
            if kind == "net":
                node = self.nodes[dst]
                if not node.crashed and (self.groups is None or any(what[1] in g and dst in g for g in self.groups)):
                    node.receive(what[1], what[2])
            elif kind in ("timer", "local"):
                node = self.nodes[dst]
                if not node.crashed and node.incarnation == what[1]:
                    node.feed(what[2])
            elif kind == "submit":
                self.submit(what[1])
            elif kind == "send":  # a byzantine node's delayed send
                if not self.nodes[what[1]].crashed:
                    self.net_send(what[1], what[2], what[3])
            elif kind == "partition":
                before = self.groups
                self.groups = None if self.healed else what[1]
                self.reconnected(before)
            elif kind == "crash":
                if not self.healed:
                    node = self.nodes[dst]
                    node.crashed, node.incarnation = True, node.incarnation + 1
            elif kind == "restart":
                self.restart(self.nodes[dst])
            elif kind == "heal":
                self.healed = True
                before = self.groups
                self.groups, self.drop, self.dup, self.drop_commits, self.delay = None, 0.0, 0.0, 0.0, (1, 20)
                self.bandwidth, self.stall = 0, (0.0, 0, 0)
                for node in self.nodes:
                    self.restart(node)
                self.healed_at = self.now
                self.heal_height = max(len(x.chain) for x in self.nodes if x.honest)
                self.reconnected(before)
            if self.healed and self.stats.heal_commit_ms is None:
                if max(len(x.chain) for x in self.nodes if x.honest) > self.heal_height:
                    self.stats.heal_commit_ms = self.now - self.healed_at
            if self.healed and self.honest_done():
                break
        if not self.honest_done():
            behind = {x.id: len(x.committed) for x in self.nodes if x.honest}
            raise Violation("liveness", f"{len(self.submitted)} txs submitted, committed per honest node: "
                            f"{behind}, {sc.bound_ms}ms after healing", self.now)
        self.stats.blocks = max(len(x.chain) for x in self.nodes if x.honest)
        return self.stats

    def linked(self, groups, a: int, b: int) -> bool:
        return groups is None or any(a in g and b in g for g in groups)

    def reconnected(self, before) -> None:
        """Tell both ends of every link the new groups restore that `before` cut (a new
        session, as node/runner.py reports it), if the scenario asks for it."""
        if not self.sc.reconnect:
            return
        for a in self.nodes:
            for b in self.nodes:
                if a.key != b.key and not self.linked(before, a.id, b.id) and self.linked(self.groups, a.id, b.id):
                    a.feed(PeerConnected(b.key))

    def restart(self, node: Node) -> None:
        if node.crashed:
            node.crashed = False
            node.incarnation += 1
            node.boot()
