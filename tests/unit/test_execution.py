"""The state machine: receipts, includability, conservation of credits, determinism."""

from __future__ import annotations

import dataclasses
import random

import pytest

from genesis.testnet import make_testnet
from ledger import accounts, governance, txtypes
from ledger.chain import Chain
from ledger.context import BlockContext
from ledger.crypto import Signer
from ledger.encoding import encode, sha256
from ledger.errors import BlockInvalid, TxRejected
from ledger.execution import NotIncludable, execute_block
from ledger.merkle import merkle_root
from ledger.state import StateView
from ledger.store.base import PREFIX_STATE
from ledger.statetree import apply_writes, prove, verify_proof
from ledger.store.memory import MemoryStore
from ledger.tx import decode_tx, make_tx
from ledger.txtypes import TxType

STRANGER = Signer(sha256(b"stranger"))


@pytest.fixture
def net():
    return make_testnet(n_orgs=4, n_validators=1)


@pytest.fixture
def chain(net):
    return net.chain()


def advance(net, chain: Chain, txs, *, step: int = 1000):
    """Build, validate (as a replica would), certify and commit one block."""
    last_cert = chain.get_cert(chain.height) if chain.height else None
    block, built = chain.build_block(
        txs, time_ms=chain.head.time_ms + step, view=0, proposer=net.validators[0].public_key, last_cert=last_cert
    )
    if not built.txs and chain.heartbeat_due(block.header.time_ms) is None:
        # nothing includable and no heartbeat due yet: a primary would wait until one is
        block, built = chain.build_block(
            txs, time_ms=chain.next_heartbeat_ms(), view=0, proposer=net.validators[0].public_key,
            last_cert=last_cert)
    result = chain.validate_block(block)
    assert result.state_root == built.state_root and result.results_root == built.results_root
    assert not result.excluded
    result.excluded = built.excluded  # what the proposer left out
    chain.commit_block(block, net.certify(chain, block), result)
    return block, result


def nonce(chain, signer):
    return accounts.next_nonce(chain.state(), signer.address)


def bal(chain, who):
    return accounts.balance(chain.state(), who if isinstance(who, str) else who.address)


def conserved(state: StateView) -> bool:
    total = sum(v for _, v in state.items(b"bal/"))
    return total + accounts.escrow_total(state) == accounts.supply(state)


def tx(chain, signer, kind, payload, *, n=None, expiry=0, chain_id=None):
    return make_tx(signer, chain_id or chain.chain_id, nonce(chain, signer) if n is None else n, kind, payload, expiry)


def test_transfer_ok(net, chain):
    a, b = net.admins["org1"], net.operators["org2"]
    a0, b0 = bal(chain, a), bal(chain, b)
    _, res = advance(net, chain, [tx(chain, a, "transfer", {"to": b.address, "amount": 123, "memo": "rent"})])
    assert [r.code for r in res.receipts] == ["ok"]
    assert res.receipts[0].result == {"to": b.address, "amount": 123}
    assert bal(chain, a) == a0 - 123 and bal(chain, b) == b0 + 123
    assert nonce(chain, a) == 1
    assert conserved(chain.state())


def test_transfer_to_new_address_and_whole_balance(net, chain):
    a = net.admins["org1"]
    everything = bal(chain, a)
    _, res = advance(net, chain, [tx(chain, a, "transfer", {"to": STRANGER.address, "amount": everything})])
    assert res.receipts[0].ok
    assert bal(chain, a) == 0 and bal(chain, STRANGER) == everything
    assert conserved(chain.state())


def test_transfer_to_self(net, chain):
    a = net.admins["org1"]
    a0 = bal(chain, a)
    _, res = advance(net, chain, [tx(chain, a, "transfer", {"to": a.address, "amount": a0})])
    assert res.receipts[0].ok and bal(chain, a) == a0


def test_overspend_changes_only_the_nonce(net, chain):
    a, b = net.admins["org1"], net.operators["org2"]
    a0, b0 = bal(chain, a), bal(chain, b)
    _, res = advance(net, chain, [tx(chain, a, "transfer", {"to": b.address, "amount": a0 + 1})])
    assert res.receipts[0].code == "insufficient_funds"
    assert set(res.writes) == {accounts.nonce_key(a.address)}
    assert bal(chain, a) == a0 and bal(chain, b) == b0 and nonce(chain, a) == 1


def test_unknown_sender(net, chain):
    _, res = advance(net, chain, [tx(chain, STRANGER, "transfer", {"to": net.admins["org1"].address, "amount": 1})])
    assert res.receipts[0].code == "unknown_sender"
    assert set(res.writes) == {accounts.nonce_key(STRANGER.address)}


@pytest.mark.parametrize("role, kind, payload", [
    ("auditor", "transfer", {"amount": 1}),
    ("operator", "propose", {"action": "mint", "args": {"amount": 1}}),
    ("operator", "vote", {"proposal": 1, "approve": True}),
    ("auditor", "vote", {"proposal": 1, "approve": True}),
])
def test_wrong_role_unauthorized(net, chain, role, kind, payload):
    signer = {"auditor": net.auditors, "operator": net.operators}[role]["org1"]
    payload = dict(payload)
    if kind == "transfer":
        payload["to"] = net.admins["org2"].address
    if kind == "propose":
        payload["args"] = {"to": signer.address, "amount": 1}
    _, res = advance(net, chain, [tx(chain, signer, kind, payload)])
    assert res.receipts[0].code == "unauthorized"
    assert set(res.writes) == {accounts.nonce_key(signer.address)}
    assert accounts.supply(chain.state()) == accounts.supply(net.chain().state())


def test_unknown_type(net, chain):
    a = net.admins["org1"]
    _, res = advance(net, chain, [tx(chain, a, "teleport", {})])
    assert res.receipts[0].code == "unknown_type"
    assert set(res.writes) == {accounts.nonce_key(a.address)}


@pytest.mark.parametrize("payload, code", [
    ({"amount": 5}, "bad_address"),
    ({"to": "cx123", "amount": 5}, "bad_address"),
    ({"to": "CX" + "a" * 40, "amount": 5}, "bad_address"),
    ({"to": None, "amount": 5}, "bad_address"),
    ({"to": "cx" + " " * 40, "amount": 5}, "bad_address"),  # bytes.fromhex skips whitespace: credits were burned
    ({"to": "cx" + "\t" * 40, "amount": 5}, "bad_address"),
    ({"to": "cx" + "\u0660" * 40, "amount": 5}, "bad_address"),
    ({"to": "@"}, "bad_amount"),
    ({"to": "@", "amount": 0}, "bad_amount"),
    ({"to": "@", "amount": -1}, "bad_amount"),
    ({"to": "@", "amount": True}, "bad_amount"),
    ({"to": "@", "amount": "5"}, "bad_amount"),
    ({"to": "@", "amount": 2**62 + 1}, "bad_amount"),
    ({"to": "@", "amount": 5, "extra": 1}, "bad_payload"),
    ({"to": "@", "amount": 5, "memo": 7}, "bad_payload"),
    ({"to": "@", "amount": 5, "memo": "m" * 257}, "bad_payload"),
])
def test_bad_transfer_payloads(net, chain, payload, code):
    a, b = net.admins["org1"], net.operators["org2"]
    payload = {k: (b.address if v == "@" else v) for k, v in payload.items()}
    a0 = bal(chain, a)
    _, res = advance(net, chain, [tx(chain, a, "transfer", payload)])
    assert res.receipts[0].code == code
    assert set(res.writes) == {accounts.nonce_key(a.address)}
    assert bal(chain, a) == a0


def test_failed_handler_leaves_no_partial_write(net, chain, monkeypatch):
    def half_then_fail(state, ctx, payload):
        state.put(b"junk", 1)
        accounts.credit(state, ctx.sender, 10**6)
        raise TxRejected("nope", "half_done")

    def half_then_crash(state, ctx, payload):
        state.put(b"junk", 1)
        return payload["missing"]

    def overflow(state, ctx, payload):
        state.put(b"junk", 1)
        return {"k": payload["n"].to_bytes(2, "big")}

    def unencodable(state, ctx, payload):
        state.put(b"junk", payload["n"] * 2**64)
        return {}

    monkeypatch.setitem(txtypes.TX_TYPES, "overflow", TxType("overflow", frozenset(), overflow))
    monkeypatch.setitem(txtypes.TX_TYPES, "unencodable", TxType("unencodable", frozenset(), unencodable))
    monkeypatch.setitem(txtypes.TX_TYPES, "half", TxType("half", frozenset(), half_then_fail))
    monkeypatch.setitem(txtypes.TX_TYPES, "crash", TxType("crash", frozenset(), half_then_crash))
    a = net.admins["org1"]
    a0 = bal(chain, a)
    _, res = advance(net, chain, [tx(chain, a, "half", {}), tx(chain, a, "crash", {}, n=1),
                                  tx(chain, a, "overflow", {"n": -1}, n=2), tx(chain, a, "unencodable", {"n": 1}, n=3)])
    assert [r.code for r in res.receipts] == ["half_done", "bad_payload", "bad_payload", "bad_payload"]
    assert set(res.writes) == {accounts.nonce_key(a.address)}
    assert chain.state().get(b"junk") is None and bal(chain, a) == a0 and nonce(chain, a) == 4


def _ctx(chain, height=None):
    return BlockContext(chain.chain_id, height or chain.height + 1, chain.head.time_ms + 1000, chain.params)


@pytest.mark.parametrize("case", ["gap", "reuse", "expired", "duplicate", "wrong_chain", "bad_signature"])
def test_not_includable(net, chain, case):
    a, b = net.admins["org1"], net.operators["org2"]
    pay = {"to": b.address, "amount": 1}
    advance(net, chain, [tx(chain, a, "transfer", pay)])  # nonce 0 used, height 1
    t1 = tx(chain, a, "transfer", pay)
    expected_code = {"gap": "bad_nonce", "reuse": "bad_nonce", "expired": "expired", "duplicate": "duplicate",
                     "wrong_chain": "wrong_chain", "bad_signature": "bad_signature"}[case]
    if case == "gap":
        bad = tx(chain, a, "transfer", pay, n=3)
    elif case == "reuse":
        bad = tx(chain, a, "transfer", pay, n=0)
    elif case == "expired":
        bad = tx(chain, a, "transfer", pay, n=1, expiry=1)  # valid up to height 1; next block is 2
        t1 = tx(chain, b, "transfer", {"to": a.address, "amount": 1})
    elif case == "duplicate":
        bad = t1
    elif case == "wrong_chain":
        bad = tx(chain, b, "transfer", pay, chain_id="cxl-other")
    else:
        good = tx(chain, b, "transfer", pay)
        bad = decode_tx(encode([good.tx.to_wire(), bytes(64)]))
    txs = [t1, bad]

    # straight execution refuses the block
    with pytest.raises(NotIncludable) as exc:
        execute_block(chain.store, _ctx(chain), txs, chain.head.state_root)
    assert exc.value.code == expected_code

    # a proposer drops it and says why
    block, built = chain.build_block(txs, time_ms=chain.head.time_ms + 1000, view=0,
                                     proposer=net.validators[0].public_key, last_cert=chain.get_cert(1))
    assert [t.hash for t in built.txs] == [t1.hash]
    assert [(t.hash, code) for t, code, _ in built.excluded] == [(bad.hash, expected_code)]

    # a replica given a block that includes it rejects the whole block
    raws = (t1.raw, bad.raw)
    forged = dataclasses.replace(block, txs=raws,
                                 header=dataclasses.replace(block.header, txs_root=merkle_root(list(raws))))
    with pytest.raises(BlockInvalid) as exc:
        chain.validate_block(forged)
    assert exc.value.code == expected_code
    assert chain.height == 1


def test_expiry_is_inclusive(net, chain):
    a, b = net.admins["org1"], net.operators["org2"]
    _, res = advance(net, chain, [tx(chain, a, "transfer", {"to": b.address, "amount": 1}, expiry=1)])
    assert [r.code for r in res.receipts] == ["ok"]


def test_nonces_must_be_sequential_within_a_block(net, chain):
    a, b = net.admins["org1"], net.operators["org2"]
    txs = [tx(chain, a, "transfer", {"to": b.address, "amount": 1}, n=i) for i in (0, 1, 2, 4, 3)]
    _, res = advance(net, chain, txs[:3])
    assert len(res.receipts) == 3 and nonce(chain, a) == 3
    block, built = chain.build_block(txs[3:], time_ms=chain.head.time_ms + 1, view=0,
                                     proposer=net.validators[0].public_key, last_cert=chain.get_cert(1))
    # nonce 4 arrives before 3: dropped; 3 is included
    assert [t.tx.nonce for t in built.txs] == [3]
    assert [t.tx.nonce for t, _, _ in built.excluded] == [4]


def test_state_root_is_the_tree_root_over_all_state(net, chain):
    # replaces the pin on the old running digest H(prev || H(writes)): the state root is
    # now the root of the state tree over every state entry, whatever the history
    a, b = net.admins["org1"], net.operators["org2"]
    _, res = advance(net, chain, [tx(chain, a, "transfer", {"to": b.address, "amount": 9})])
    everything = {k[len(PREFIX_STATE):]: v for k, v in chain.store.iterate(PREFIX_STATE)}
    assert res.state_root == chain.head.state_root == apply_writes(MemoryStore(), 0, everything).root
    key = b"bal/" + b.address.encode()
    value, proof = prove(chain.store, key, chain.height)
    assert value == chain.store.get(PREFIX_STATE + key)
    assert verify_proof(chain.head.state_root, key, value, proof)
    assert res.results_root == merkle_root([r.encode() for r in res.receipts])


def _random_block(rng: random.Random, net, chain, extra_addrs):
    signers = [net.admins[o] for o in net.admins] + [net.operators[o] for o in net.operators]
    signers += [net.auditors["org1"], STRANGER]
    nonces: dict[str, int] = {}
    txs = []
    for _ in range(rng.randint(0, 12)):
        s = rng.choice(signers)
        n = nonces.get(s.address, nonce(chain, s))
        roll = rng.random()
        if roll < 0.1:
            n += rng.choice([-1, 1, 5])  # a nonce gap or reuse: must be dropped
        else:
            nonces[s.address] = n + 1
        to = rng.choice(extra_addrs + [x.address for x in signers])
        amount = rng.choice([1, rng.randint(1, 10**6), bal(chain, s) or 1, bal(chain, s) + 1, 10**13])
        payload = {"to": to, "amount": amount}
        if rng.random() < 0.05:
            payload = {"to": to, "amount": -amount}
        txs.append(make_tx(s, chain.chain_id, max(n, 0), "transfer", payload))
    if rng.random() < 0.2:
        # a mint proposal that passes immediately with three orgs' votes
        admin = net.admins["org1"]
        pid = chain.state().get(b"gov/next", 1)
        n0 = nonces.get(admin.address, nonce(chain, admin))
        nonces[admin.address] = n0 + 1
        txs.append(make_tx(admin, chain.chain_id, n0, "propose",
                           {"action": "mint", "args": {"to": rng.choice(extra_addrs), "amount": rng.randint(1, 10**9)}}))
        for org in ("org2", "org3"):
            v = net.admins[org]
            nv = nonces.get(v.address, nonce(chain, v))
            nonces[v.address] = nv + 1
            txs.append(make_tx(v, chain.chain_id, nv, "vote", {"proposal": pid, "approve": True}))
    rng.shuffle(txs) if rng.random() < 0.1 else None
    return txs


def test_conservation_and_determinism_over_random_blocks(net):
    rng = random.Random(20261126)
    chain = net.chain()
    extra = [Signer(sha256(b"x%d" % i)).address for i in range(5)]
    blocks, roots = [], []
    supply0 = accounts.supply(chain.state())
    assert conserved(chain.state())
    minted, excluded, codes = 0, 0, set()
    for i in range(40):
        txs = _random_block(rng, net, chain, extra)
        block, res = advance(net, chain, txs, step=rng.randint(1, 5000))
        for stx, receipt in zip(res.txs, res.receipts):
            if stx.tx.type == "vote" and receipt.ok and receipt.result["status"] == "executed":
                minted += governance.get_proposal(chain.state(), receipt.result["proposal"])["args"]["amount"]
        codes.update(r.code for r in res.receipts)
        excluded += len(res.excluded)
        state = chain.state()
        assert conserved(state), f"credits not conserved after block {i + 1} (seed 20261126)"
        assert accounts.supply(state) == supply0 + minted
        assert all(v > 0 for _, v in state.items(b"bal/"))
        blocks.append((block, chain.get_cert(block.height)))
        roots.append((block.header.state_root, block.header.results_root))
    assert minted > 0, "the random run never exercised mint"
    assert excluded > 0 and {"ok", "insufficient_funds", "unknown_sender", "unauthorized", "bad_amount"} <= codes

    # replaying the same blocks on a fresh chain gives identical roots and state
    replica = net.chain()
    for (block, cert), (sroot, rroot) in zip(blocks, roots):
        res = replica.apply_certified(block, cert)
        assert (res.state_root, res.results_root) == (sroot, rroot)
    assert replica.head == chain.head
    assert list(replica.store.iterate(b"s/")) == list(chain.store.iterate(b"s/"))


def test_same_blocks_same_roots_on_two_fresh_chains(net):
    a, b = net.admins["org1"], net.operators["org2"]
    c1, c2 = net.chain(), net.chain()
    for _ in range(3):
        txs = [tx(c1, a, "transfer", {"to": b.address, "amount": 7}),
               tx(c1, b, "transfer", {"to": STRANGER.address, "amount": 10**15})]
        block, res1 = advance(net, c1, txs)
        res2 = c2.validate_block(block)
        c2.commit_block(block, c1.get_cert(block.height), res2)
        assert (res1.state_root, res1.results_root) == (res2.state_root, res2.results_root)
        assert [r.code for r in res1.receipts] == ["ok", "insufficient_funds"]
    assert c1.head == c2.head


# -- the layered state view, against a plain dict model ---------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as hst  # noqa: E402

from ledger.store.memory import MemoryStore  # noqa: E402

_keys = hst.sampled_from([b"a/1", b"a/2", b"a/3", b"a", b"b/1", b"a/\xff", b"ab"])
_ops = hst.lists(
    hst.tuples(hst.sampled_from(["put", "del", "child", "merge", "drop"]), _keys, hst.integers(0, 5)),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(hst.dictionaries(_keys, hst.integers(0, 5), max_size=5), _ops)
def test_state_view_layers_match_a_dict_model(initial, ops):
    store = MemoryStore()
    store.write({b"s/" + k: encode(v) for k, v in initial.items()})
    store.write({b"x/outside": b"\x01"})  # not state: must never show up
    views = [StateView(store)]
    models = [dict(initial)]
    for op, key, value in ops:
        top, model = views[-1], models[-1]
        if op == "put":
            top.put(key, value)
            model[key] = value
        elif op == "del":
            top.delete(key)
            model.pop(key, None)
        elif op == "child":
            views.append(top.child())
            models.append(dict(model))
        elif op == "merge" and len(views) > 1:
            views.pop().merge_into_parent()
            merged = models.pop()
            models[-1] = merged
        elif op == "drop" and len(views) > 1:
            views.pop()
            models.pop()
        top, model = views[-1], models[-1]
        for k in {key, b"a/1", b"zz"}:
            assert top.get(k) == model.get(k)
        assert list(top.items(b"a/")) == sorted((k, v) for k, v in model.items() if k.startswith(b"a/"))
        assert list(top.items(b"")) == sorted(model.items())
    # nothing reaches the store until the caller commits the bottom view's writes
    assert {k: v for k, v in store.iterate(b"s/")} == {b"s/" + k: encode(v) for k, v in initial.items()}
    while len(views) > 1:
        views.pop().merge_into_parent()
        merged = models.pop()
        models[-1] = merged
    store.write(views[0].store_writes())
    assert list(StateView(store).items(b"")) == sorted(models[0].items())
