"""The chain: header validation, certificates, atomic commit, reads and proofs, reopening."""

from __future__ import annotations

import dataclasses

import pytest

from genesis.testnet import make_testnet
from ledger import accounts
from ledger.block import (
    HEADER_FIELDS,
    ZERO_HASH,
    Block,
    Certificate,
    Header,
    commit_signing_bytes,
    next_validators_hash,
    validator_set_hash,
)
from ledger.chain import META_HEADER_FORMAT, Chain
from ledger.crypto import Signer, verify
from ledger.encoding import decode, encode, sha256
from ledger.errors import BlockInvalid, StoreError
from ledger.merkle import merkle_root, verify_inclusion
from ledger.store.leveldb import LevelDBStore
from ledger.store.memory import MemoryStore
from ledger.tx import make_tx

OUTSIDER = Signer(sha256(b"outsider"))


def transfers(net, chain, count=3, amount=5):
    a, b = net.admins["org1"], net.operators["org2"]
    n = accounts.next_nonce(chain.state(), a.address)
    return [make_tx(a, chain.chain_id, n + i, "transfer", {"to": b.address, "amount": amount}) for i in range(count)]


def advance(net, chain, txs=(), *, proposer=0):
    """One block 1 s after the head; with no txs, a heartbeat block at the time it is due."""
    time_ms = chain.head.time_ms + 1000 if txs else chain.next_heartbeat_ms()
    block, _ = chain.build_block(list(txs), time_ms=time_ms, view=0,
                                 proposer=net.validators[proposer].public_key,
                                 last_cert=chain.get_cert(chain.height) if chain.height else None)
    result = chain.validate_block(block)
    cert = net.certify(chain, block)
    chain.commit_block(block, cert, result)
    return block, cert, result


@pytest.fixture
def net():
    return make_testnet(n_orgs=4, n_validators=4)


@pytest.fixture
def chain(net):
    c = net.chain()
    advance(net, c, transfers(net, c))
    advance(net, c, transfers(net, c))
    return c


@pytest.fixture
def candidate(net, chain):
    block, _ = chain.build_block(transfers(net, chain) + [make_tx(OUTSIDER, chain.chain_id, 0, "transfer", {})],
                                 time_ms=chain.head.time_ms + 1000, view=0,
                                 proposer=net.validators[1].public_key, last_cert=chain.get_cert(2))
    chain.validate_block(block)  # the untampered block is fine
    return block


def with_header(block: Block, **changes) -> Block:
    return dataclasses.replace(block, header=dataclasses.replace(block.header, **changes))


def with_cert(block: Block, cert: Certificate | None) -> Block:
    return dataclasses.replace(
        block, last_cert=cert,
        header=dataclasses.replace(block.header, last_cert_hash=ZERO_HASH if cert is None else cert.hash),
    )


def resign(net, cert: Certificate, signers) -> Certificate:
    msg = commit_signing_bytes("cxl-test", cert.view, cert.height, cert.block_hash)
    return Certificate.build(cert.height, cert.view, cert.block_hash, {s.public_key: s.sign(msg) for s in signers})


HEADER_TAMPERS = {
    "chain_id": (lambda c, b: {"chain_id": "cxl-other"}, "wrong_chain"),
    "height_up": (lambda c, b: {"height": b.height + 1}, "wrong_height"),
    "height_down": (lambda c, b: {"height": b.height - 1}, "wrong_height"),
    "parent": (lambda c, b: {"parent_hash": sha256(b"x")}, "bad_parent"),
    "parent_grandparent": (lambda c, b: {"parent_hash": c.get_block(1).hash}, "bad_parent"),
    "time_equal": (lambda c, b: {"time_ms": c.head.time_ms}, "bad_time"),
    "time_before": (lambda c, b: {"time_ms": c.head.time_ms - 1}, "bad_time"),
    "proposer": (lambda c, b: {"proposer": OUTSIDER.public_key}, "bad_proposer"),
    "validator_set_hash": (lambda c, b: {"validator_set_hash": validator_set_hash(c.validator_keys[:3])},
                           "bad_validator_set"),
    "next_validators_hash": (lambda c, b: {"next_validators_hash": next_validators_hash(c.validator_keys[:3])},
                             "bad_next_validators"),
    "next_validators_hash_unsorted": (
        lambda c, b: {"next_validators_hash": sha256(encode(sorted(c.validator_keys, reverse=True)))},
        "bad_next_validators"),
    "txs_root": (lambda c, b: {"txs_root": merkle_root([])}, "bad_txs_root"),
    "results_root": (lambda c, b: {"results_root": sha256(b"r")}, "bad_results_root"),
    "state_root": (lambda c, b: {"state_root": c.head.state_root}, "bad_state_root"),
    "last_cert_hash": (lambda c, b: {"last_cert_hash": sha256(b"c")}, "bad_last_cert"),
    "last_cert_hash_zero": (lambda c, b: {"last_cert_hash": ZERO_HASH}, "bad_last_cert"),
}


@pytest.mark.parametrize("name", sorted(HEADER_TAMPERS))
def test_tampered_header_rejected(chain, candidate, name):
    change, code = HEADER_TAMPERS[name]
    head = chain.head
    with pytest.raises(BlockInvalid) as exc:
        chain.validate_block(with_header(candidate, **change(chain, candidate)))
    assert exc.value.code == code
    assert chain.head == head


def test_validation_writes_nothing(chain, candidate):
    before = list(chain.store.iterate(b""))
    head = chain.head
    chain.validate_block(candidate)
    with pytest.raises(BlockInvalid):
        chain.validate_block(with_header(candidate, state_root=sha256(b"s")))
    assert list(chain.store.iterate(b"")) == before and chain.head == head


def test_time_too_far_in_future(chain, candidate):
    skew = chain.params["time_skew_ms"]
    t = candidate.header.time_ms
    chain.validate_block(candidate, now_ms=t - skew)  # exactly at the allowed skew
    with pytest.raises(BlockInvalid) as exc:
        chain.validate_block(candidate, now_ms=t - skew - 1)
    assert exc.value.code == "bad_time"
    chain.validate_block(candidate, now_ms=None)


def test_tampered_body_rejected(net, chain, candidate):
    extra = transfers(net, chain, count=4)[3]
    for txs in (candidate.txs[:-1], candidate.txs + (extra.raw,), tuple(reversed(candidate.txs))):
        with pytest.raises(BlockInvalid) as exc:
            chain.validate_block(dataclasses.replace(candidate, txs=txs))
        assert exc.value.code == "bad_txs_root"
    junk = candidate.txs + (b"\xc1junk",)
    with pytest.raises(BlockInvalid) as exc:
        chain.validate_block(with_header(dataclasses.replace(candidate, txs=junk), txs_root=merkle_root(list(junk))))
    assert exc.value.code == "bad_tx"


def test_too_many_txs(net):
    n = make_testnet(n_orgs=4, n_validators=4, params={"max_block_txs": 2})
    c = n.chain()
    txs = transfers(n, c, count=3)
    block, res = c.build_block(txs, time_ms=c.head.time_ms + 1, view=0,
                               proposer=n.validators[0].public_key, last_cert=None)
    # the proposer cuts the block at max_block_txs; the rest waits (not reported as invalid)
    assert block.txs == (txs[0].raw, txs[1].raw) and res.excluded == []
    c.validate_block(block)
    raws = tuple(t.raw for t in txs)
    stuffed = with_header(dataclasses.replace(block, txs=raws), txs_root=merkle_root(list(raws)))
    with pytest.raises(BlockInvalid) as exc:
        c.validate_block(stuffed)
    assert exc.value.code == "too_many_txs"


def test_oversize_tx_left_out_by_proposer():
    n = make_testnet(n_orgs=4, n_validators=1, params={"max_tx_bytes": 512})
    c = n.chain()
    a, b = n.admins["org1"], n.operators["org2"]
    big = make_tx(a, c.chain_id, 0, "transfer", {"to": b.address, "amount": 1, "memo": "m" * 250})
    big = make_tx(a, c.chain_id, 0, "transfer", {"to": b.address, "amount": 1, "memo": "m" * 250 * 2}) \
        if len(big.raw) <= 512 else big
    assert len(big.raw) > 512
    small = make_tx(b, c.chain_id, 0, "transfer", {"to": a.address, "amount": 1})
    block, res = c.build_block([big, small], time_ms=c.head.time_ms + 1, view=0,
                               proposer=n.validators[0].public_key, last_cert=None)
    assert block.txs == (small.raw,)
    assert [(t.hash, code) for t, code, _ in res.excluded] == [(big.hash, "too_large")]
    c.validate_block(block)
    raws = (big.raw, small.raw)
    stuffed = with_header(dataclasses.replace(block, txs=raws), txs_root=merkle_root(list(raws)))
    with pytest.raises(BlockInvalid) as exc:
        c.validate_block(stuffed)
    assert exc.value.code == "bad_tx"


def test_missing_last_cert(chain, candidate):
    for bad in (dataclasses.replace(candidate, last_cert=None), with_cert(candidate, None)):
        with pytest.raises(BlockInvalid) as exc:
            chain.validate_block(bad)
        assert exc.value.code == "bad_last_cert"


def test_first_block_carries_no_cert(net):
    c = net.chain()
    block, _ = c.build_block([], time_ms=c.next_heartbeat_ms(), view=0, proposer=net.validators[0].public_key,
                             last_cert=None)
    c.validate_block(block)
    other = net.chain()
    b1, cert1, _ = advance(net, other)
    with pytest.raises(BlockInvalid) as exc:
        c.validate_block(with_cert(block, cert1))
    assert exc.value.code == "bad_last_cert"


def test_last_cert_for_the_wrong_block(net, chain, candidate):
    cert1 = chain.get_cert(1)
    with pytest.raises(BlockInvalid) as exc:
        chain.validate_block(with_cert(candidate, cert1))
    assert exc.value.code == "bad_last_cert"
    # signatures over another block hash, relabelled as the parent's
    good = chain.get_cert(2)
    relabelled = Certificate(good.height, good.view, good.block_hash, cert1.signatures)
    with pytest.raises(BlockInvalid) as exc:
        chain.validate_block(with_cert(candidate, relabelled))
    assert exc.value.code == "bad_certificate"


def _cert_variants(net, good: Certificate):
    v = net.validators
    sigs = list(good.signatures)
    out = {}
    out["too_few"] = resign(net, good, v[:2])  # quorum of 4 is 3
    out["non_validator"] = resign(net, good, v[:2] + [OUTSIDER])
    out["duplicate"] = Certificate(good.height, good.view, good.block_hash,
                                   tuple(sorted(sigs[:2] + [sigs[1]])))
    bad_sig = (sigs[0][0], bytes([sigs[0][1][0] ^ 1]) + sigs[0][1][1:])
    out["bad_signature"] = Certificate(good.height, good.view, good.block_hash, tuple([bad_sig] + sigs[1:]))
    out["unordered"] = Certificate(good.height, good.view, good.block_hash, tuple(reversed(sigs)))
    out["wrong_view"] = Certificate(good.height, good.view + 1, good.block_hash, good.signatures)
    out["wrong_chain_sigs"] = Certificate.build(good.height, good.view, good.block_hash, {
        s.public_key: s.sign(commit_signing_bytes("cxl-other", good.view, good.height, good.block_hash)) for s in v})
    out["empty"] = Certificate(good.height, good.view, good.block_hash, ())
    return out


@pytest.mark.parametrize("variant", ["too_few", "non_validator", "duplicate", "bad_signature", "unordered",
                                     "wrong_view", "wrong_chain_sigs", "empty"])
def test_bad_parent_certificate_rejected(net, chain, candidate, variant):
    good = chain.get_cert(2)
    bad = _cert_variants(net, good)[variant]
    with pytest.raises(BlockInvalid) as exc:
        chain.validate_block(with_cert(candidate, bad))
    assert exc.value.code == "bad_certificate"
    # a certificate with exactly a quorum passes
    chain.validate_block(with_cert(candidate, resign(net, good, net.validators[1:])))


@pytest.mark.parametrize("variant", ["too_few", "non_validator", "duplicate", "bad_signature", "wrong_view", "empty"])
def test_commit_and_apply_refuse_bad_certificates(net, chain, candidate, variant):
    result = chain.validate_block(candidate)
    good = net.certify(chain, candidate)
    bad = _cert_variants(net, good)[variant]
    before = list(chain.store.iterate(b""))
    with pytest.raises(BlockInvalid):
        chain.commit_block(candidate, bad, result)
    with pytest.raises(BlockInvalid):
        chain.apply_certified(candidate, bad)
    assert list(chain.store.iterate(b"")) == before and chain.height == 2


def test_commit_refuses_cert_for_another_block_and_non_next(net, chain, candidate):
    result = chain.validate_block(candidate)
    with pytest.raises(BlockInvalid) as exc:
        chain.commit_block(candidate, chain.get_cert(2), result)
    assert exc.value.code == "bad_certificate"
    chain.commit_block(candidate, net.certify(chain, candidate), result)
    with pytest.raises(BlockInvalid) as exc:
        chain.commit_block(candidate, net.certify(chain, candidate), result)
    assert exc.value.code == "not_next"
    assert chain.height == 3


def test_commit_is_one_atomic_write(net, chain, candidate, monkeypatch):
    result = chain.validate_block(candidate)
    cert = net.certify(chain, candidate)
    before = list(chain.store.iterate(b""))
    head = chain.head
    calls = []

    def failing_write(puts, *, sync=True):
        calls.append((dict(puts), sync))
        raise OSError("disk full")

    monkeypatch.setattr(chain.store, "write", failing_write)
    with pytest.raises(OSError):
        chain.commit_block(candidate, cert, result)
    monkeypatch.undo()
    assert chain.head == head and list(chain.store.iterate(b"")) == before
    # everything the block changes goes in that single synced batch
    (puts, sync), = calls
    assert sync is True
    prefixes = {k[:2] for k in puts}
    assert {b"s/", b"b/", b"c/", b"h/", b"t/", b"r/", b"m/"} <= prefixes
    chain.commit_block(candidate, cert, result)
    assert chain.height == 3


def test_reads_and_proofs(net, chain):
    txs = transfers(net, chain, count=5) + [make_tx(net.admins["org3"], chain.chain_id, 0, "transfer",
                                                    {"to": OUTSIDER.address, "amount": 10**18})]
    block, cert, result = advance(net, chain, txs)
    h = block.height
    assert chain.get_block(h) == block
    assert chain.get_block_raw(h) == block.encode()
    assert chain.get_cert(h) == cert
    assert chain.height_of(block.hash) == h
    assert chain.height_of(sha256(b"nope")) is None
    assert chain.get_block(h + 1) is None and chain.get_cert(h + 1) is None
    assert chain.receipts(h) == result.receipts
    assert [r.code for r in chain.receipts(h)] == ["ok"] * 5 + ["insufficient_funds"]
    assert chain.get_tx(sha256(b"nope")) is None and chain.tx_proof(sha256(b"nope")) is None
    validators = chain.validator_keys
    for i, stx in enumerate(txs):
        rec = chain.get_tx(stx.hash)
        assert (rec.height, rec.index, rec.tx, rec.receipt) == (h, i, stx, result.receipts[i])
        p = chain.tx_proof(stx.hash)
        hd = p["header"]
        assert hd == block.header and p["tx"] == stx.raw and p["tx_count"] == len(txs)
        assert verify_inclusion(p["tx"], p["index"], p["tx_count"], p["tx_proof"], hd.txs_root)
        assert verify_inclusion(p["receipt"].encode(), p["index"], p["tx_count"], p["receipt_proof"], hd.results_root)
        assert not verify_inclusion(txs[(i + 1) % len(txs)].raw, p["index"], p["tx_count"], p["tx_proof"],
                                    hd.txs_root)
        # the certificate binds the header offline
        p["certificate"].verify(chain.chain_id, validators)
        assert p["certificate"].block_hash == hd.hash
    # earlier blocks' txs are indexed at their own height
    first = chain.get_block(1)
    from ledger.tx import decode_tx
    assert chain.get_tx(decode_tx(first.txs[0]).hash).height == 1


def test_block_encoding_round_trip(chain):
    for h in (1, 2):
        b = chain.get_block(h)
        assert Block.decode(b.encode()) == b
        assert b.header.hash == sha256(encode(b.header.to_wire()))
    assert chain.get_block(2).last_cert == chain.get_cert(1)


def test_reopen_leveldb_chain_resumes_at_head(net, tmp_path):
    path = tmp_path / "db"
    store = LevelDBStore(path)
    c = net.chain(store)
    for _ in range(3):
        advance(net, c, transfers(net, c))
    head, keys = c.head, c.head_validator_keys
    state = list(store.iterate(b"s/"))
    store.close()

    store = LevelDBStore(path)
    try:
        c2 = net.chain(store)
        assert c2.head == head and c2.height == 3 and c2.head_validator_keys == keys
        assert list(store.iterate(b"s/")) == state
        block, _, _ = advance(net, c2, transfers(net, c2))
        assert block.height == 4 and block.header.parent_hash == head.block_hash
    finally:
        store.close()


def test_wrong_genesis_refused(net, tmp_path):
    path = tmp_path / "db"
    store = LevelDBStore(path)
    net.chain(store)
    store.close()
    other = make_testnet(n_orgs=3, n_validators=1, chain_id="cxl-other")
    store = LevelDBStore(path)
    try:
        with pytest.raises(StoreError) as exc:
            other.chain(store)
        assert exc.value.code == "wrong_genesis"
        assert Chain(store, net.doc, net.genesis_hash).height == 0
    finally:
        store.close()
    mem = MemoryStore()
    net.chain(mem)
    with pytest.raises(StoreError) as exc:
        Chain(mem, other.doc, other.genesis_hash)
    assert exc.value.code == "wrong_genesis"


def test_certificate_quorum_sizes():
    from ledger.block import quorum
    # 2f+1 when n = 3f+1; larger for other n, so two quorums always share an honest node
    assert [quorum(n) for n in range(1, 11)] == [1, 2, 2, 3, 4, 4, 5, 6, 6, 7]
    for n in range(1, 50):
        f = (n - 1) // 3
        assert 2 * quorum(n) - n >= f + 1, n   # safety: intersection holds an honest validator
        assert quorum(n) <= n - f, n           # liveness: the honest validators alone are a quorum


def test_certify_helper_signatures_verify(net, chain):
    cert = chain.get_cert(2)
    msg = commit_signing_bytes(chain.chain_id, cert.view, cert.height, cert.block_hash)
    assert all(verify(k, msg, s) for k, s in cert.signatures)


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as hst  # noqa: E402
from ledger.errors import EncodingError  # noqa: E402

_NET = make_testnet(n_orgs=4, n_validators=4)
_CHAIN = _NET.chain()
advance(_NET, _CHAIN, transfers(_NET, _CHAIN))
advance(_NET, _CHAIN, transfers(_NET, _CHAIN))
_RAW = _CHAIN.get_block_raw(2)


@hst.composite
def _mutations(draw):
    raw = bytearray(_RAW)
    for _ in range(draw(hst.integers(1, 3))):
        i = draw(hst.integers(0, len(raw) - 1))
        raw[i] = draw(hst.integers(0, 255))
    return bytes(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutations())
def test_mutated_block_bytes_never_validate(mutated):
    """A stored/received block with any byte changed is refused, with a typed error only."""
    fresh = _NET.chain()
    advance(_NET, fresh, [decode_tx_(r) for r in _CHAIN.get_block(1).txs])
    try:
        block = Block.decode(mutated)
    except EncodingError:
        return
    assert block.encode() == mutated
    if mutated == _RAW:
        return
    try:
        fresh.validate_block(block)
    except BlockInvalid:
        assert fresh.height == 1
        return
    # still valid: only fields a proposer chooses freely may differ (consensus checks the view)
    original = Block.decode(_RAW)
    assert block.txs == original.txs and block.last_cert == original.last_cert
    assert dataclasses.replace(block.header, view=original.header.view, time_ms=original.header.time_ms) \
        == original.header


def decode_tx_(raw):
    from ledger.tx import decode_tx
    return decode_tx(raw)


# -- the state tree behind the state root ------------------------------------------------------

from ledger.statetree import PREFIX_ROOT, VersionUnavailable, prove, verify_proof  # noqa: E402


def test_every_height_state_root_proves_its_values(net):
    chain = net.chain(MemoryStore())
    b = net.operators["org2"]
    key = accounts.bal_key(b.address)
    balances = []
    for _ in range(4):
        advance(net, chain, transfers(net, chain, count=1, amount=7))
        balances.append(chain.store.get(b"s/" + key))
    for height in range(1, 5):
        header = chain.get_block(height).header
        value, proof = prove(chain.store, key, height)
        assert value == balances[height - 1]
        assert verify_proof(header.state_root, key, value, proof.encode())
        # absent keys are proven absent at every height, against the same root
        value, proof = prove(chain.store, b"bal/nobody", height)
        assert value is None and verify_proof(header.state_root, b"bal/nobody", None, proof)


def test_versions_beyond_the_window_are_pruned(net):
    chain = Chain(MemoryStore(), net.doc, net.genesis_hash, state_versions_kept=2)
    for _ in range(5):
        advance(net, chain, transfers(net, chain, count=1))
    for height in (0, 1, 2, 3):
        with pytest.raises(VersionUnavailable):
            prove(chain.store, b"supply", height)
    for height in (4, 5):
        value, proof = prove(chain.store, b"supply", height)
        assert verify_proof(chain.get_block(height).header.state_root, b"supply", value, proof)
    with pytest.raises(ValueError):
        Chain(MemoryStore(), net.doc, net.genesis_hash, state_versions_kept=0)


def test_a_store_without_a_state_tree_is_refused(net):
    # a data directory from before the state tree (its head has no tree version)
    mem = MemoryStore()
    net.chain(mem)
    mem.write({k: None for k, _ in mem.iterate(PREFIX_ROOT)})
    with pytest.raises(StoreError) as exc:
        Chain(mem, net.doc, net.genesis_hash)
    assert exc.value.code == "no_state_tree"


def test_header_carries_the_hash_of_the_next_sorted_validator_set(chain):
    hd = chain.get_block(2).header
    assert len(hd.to_wire()) == HEADER_FIELDS == 12
    # recomputed from docs/protocol.md §6: H(encode(sorted keys)) of the set deciding height 3
    expected = sha256(encode(sorted(chain.validator_keys)))
    assert hd.next_validators_hash == expected
    assert hd.to_wire()[10] == expected
    assert Header.from_wire(decode(hd.encode())) == hd


def test_eleven_field_headers_do_not_decode(chain):
    wire = chain.get_block(1).header.to_wire()
    del wire[10]
    with pytest.raises(Exception) as exc:
        Header.from_wire(wire)
    assert "header" in str(exc.value)


def test_a_store_with_the_old_header_format_is_refused(net):
    mem = MemoryStore()
    net.chain(mem)
    assert decode(mem.get(META_HEADER_FORMAT)) == 2
    mem.write({META_HEADER_FORMAT: None})
    with pytest.raises(StoreError) as exc:
        Chain(mem, net.doc, net.genesis_hash)
    assert exc.value.code == "old_header_format"
    assert "fresh --home" in exc.value.message
    mem.write({META_HEADER_FORMAT: encode(1)})
    with pytest.raises(StoreError) as exc:
        Chain(mem, net.doc, net.genesis_hash)
    assert exc.value.code == "old_header_format"


def test_no_validator_change_index_without_changes(chain):
    assert chain.validator_changes(0, 10) == []
