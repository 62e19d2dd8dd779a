"""Mempool against one organisation trying to fill it: byte shares per sender and per
organisation, eviction of gapped (not ready) transactions first and oldest first, an
expiry for gapped transactions, and admission checks of role, type and payload size."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from ledger.crypto import Signer
from ledger.encoding import encode, sha256
from ledger.tx import make_tx

from node.errors import MempoolFull, TxAdmissionError
from node.mempool import DEFAULT_MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES, Mempool

CHAIN = "cxl-test"
EVIL = [Signer(sha256(b"evil%d" % i)) for i in range(3)]
GOOD = [Signer(sha256(b"good%d" % i)) for i in range(3)]
AUDITOR = Signer(sha256(b"auditor"))
TO = Signer(sha256(b"to")).address
MEMO = "m" * 256  # the largest memo a transfer may carry


class Members:
    """Member records like `accounts.member` returns ({org, role, key}), and nonces."""

    def __init__(self):
        self.nonces: dict[str, int] = {}
        self.members = {s.address: {"org": "evil", "role": "operator", "key": s.public_key} for s in EVIL}
        self.members.update({s.address: {"org": f"good{i}", "role": "admin", "key": s.public_key}
                             for i, s in enumerate(GOOD)})
        self.members[AUDITOR.address] = {"org": "audit", "role": "auditor", "key": AUDITOR.public_key}

    def lookup(self, address: str):
        return self.members.get(address), self.nonces.get(address, 0)


def transfer(signer, nonce, memo=MEMO, **kw):
    return make_tx(signer, CHAIN, nonce, "transfer", {"to": TO, "amount": 1, "memo": memo}, **kw)


def make_pool(clock=None, **kw) -> tuple[Mempool, Members]:
    m = Members()
    extra = {"clock": (lambda: clock[0])} if clock is not None else {}
    return Mempool(CHAIN, m.lookup, **kw, **extra), m


def park_gapped(mp: Mempool, signers, limit: int = 5_000) -> int:
    """What the reported attack did: nonce-gapped transfers (nonce 0 never sent) with
    the largest memos, from every key, until the mempool refuses. Bounded."""
    parked = 0
    for signer in signers:
        for nonce in range(1, limit):
            try:
                mp.add(transfer(signer, nonce))
            except MempoolFull:
                break
            parked += 1
    return parked


def test_one_organisation_parking_gapped_txs_cannot_fill_the_pool():
    mp, _ = make_pool(max_bytes=400_000, max_txs=20_000)
    parked = park_gapped(mp, EVIL)
    assert parked > 100 and mp.ready_count() == 0
    assert mp.bytes <= mp.org_share_bytes < mp.max_bytes  # the org met its share, not the pool's limit
    for i, signer in enumerate(GOOD):  # every other organisation still gets in
        assert mp.add(transfer(signer, 0))
    assert mp.ready_count() == 3


def test_the_sender_byte_share_is_429_sender_quota():
    one = len(transfer(EVIL[0], 1).raw)
    mp, _ = make_pool(max_bytes=10**6, max_sender_bytes=5 * one, max_org_bytes=10**6, max_tx_bytes=one)
    for n in range(5):
        mp.add(transfer(EVIL[0], n))
    with pytest.raises(MempoolFull) as e:
        mp.add(transfer(EVIL[0], 5))
    assert (e.value.code, e.value.status) == ("sender_quota", 429)
    assert mp.add(transfer(EVIL[1], 0))  # another key of the same org still has room


def test_the_org_byte_share_is_429_org_quota():
    one = len(transfer(EVIL[0], 1).raw)
    mp, _ = make_pool(max_bytes=10**6, max_sender_bytes=10**6, max_org_bytes=4 * one, max_tx_bytes=one)
    for n in range(2):
        mp.add(transfer(EVIL[0], n))
        mp.add(transfer(EVIL[1], n))
    with pytest.raises(MempoolFull) as e:
        mp.add(transfer(EVIL[2], 0))
    assert (e.value.code, e.value.status) == ("org_quota", 429)
    assert "evil" in e.value.message
    assert mp.add(transfer(GOOD[0], 0))


def test_a_ready_newcomer_evicts_gapped_txs_oldest_first():
    clock = [0.0]
    one = len(transfer(EVIL[0], 1).raw)
    mp, _ = make_pool(clock, max_bytes=6 * one, max_sender_bytes=10**6, max_org_bytes=10**6)
    gapped = []
    for n in range(1, 5):  # EVIL[0] waits for nonce 0: all gapped; oldest first
        clock[0] += 1
        gapped.append(transfer(EVIL[0], n))
        mp.add(gapped[-1])
    ready = [transfer(GOOD[0], 0), transfer(GOOD[0], 1)]
    for t in ready:
        mp.add(t)
    assert len(mp) == 6 and mp.ready_count() == 2
    newcomer = transfer(GOOD[1], 0)
    assert mp.add(newcomer)
    gone = mp.evicted  # the one it needed, maybe a little more (spare room, see _evict_gapped_for)
    assert 1 <= gone < len(gapped)
    assert all(t.hash not in mp for t in gapped[:gone]) and all(t.hash in mp for t in gapped[gone:] + ready)
    assert newcomer.hash in mp and mp.bytes <= mp.max_bytes


def test_a_gapped_newcomer_evicts_nothing_and_ready_txs_are_never_evicted():
    one = len(transfer(EVIL[0], 1).raw)
    mp, _ = make_pool(max_bytes=3 * one, max_sender_bytes=10**6, max_org_bytes=10**6)
    mp.add(transfer(EVIL[0], 2))  # gapped
    mp.add(transfer(GOOD[0], 0))
    mp.add(transfer(GOOD[0], 1))
    before = set(mp.verified_hashes())
    with pytest.raises(MempoolFull) as e:
        mp.add(transfer(EVIL[1], 5))  # gapped itself: may not push out a waiting tx
    assert e.value.code == "mempool_full" and set(mp.verified_hashes()) == before
    mp.add(transfer(GOOD[2], 0))  # ready: takes the gapped one's place
    with pytest.raises(MempoolFull):
        mp.add(transfer(GOOD[1], 0))  # only ready ones left: nothing to evict
    assert mp.ready_count() == 3 and len(mp) == 3


def test_gapped_txs_expire_ready_ones_do_not():
    clock = [1000.0]
    mp, _ = make_pool(clock, gapped_ttl_s=60)
    waiting = transfer(EVIL[0], 3)
    mp.add(waiting)
    ready = transfer(GOOD[0], 0)
    mp.add(ready)
    clock[0] += 59
    assert mp.on_commit([]) == []
    clock[0] += 2
    assert [t.hash for t in mp.on_commit([])] == [waiting.hash]
    assert ready.hash in mp and len(mp) == 1 and mp.expired == 1


def test_expiry_also_runs_when_the_pool_is_full_and_no_block_comes():
    clock = [0.0]
    one = len(transfer(EVIL[0], 1).raw)
    mp, _ = make_pool(clock, max_bytes=2 * one, gapped_ttl_s=60, max_sender_bytes=10**6, max_org_bytes=10**6)
    mp.add(transfer(EVIL[0], 1))
    mp.add(transfer(EVIL[1], 1))
    with pytest.raises(MempoolFull):
        mp.add(transfer(EVIL[2], 9))
    clock[0] = 61
    assert mp.add(transfer(EVIL[2], 9))  # the two stale ones went; a gapped newcomer fits now
    assert len(mp) == 1


@pytest.mark.parametrize("signer, kind, payload, ok", [
    (EVIL[0], "transfer", {"to": TO, "amount": 1}, True),
    (AUDITOR, "transfer", {"to": TO, "amount": 1}, False),     # auditors may not move credits
    (EVIL[0], "propose", {"action": "mint", "args": {"to": TO, "amount": 1}}, False),  # admins only
    (GOOD[0], "propose", {"action": "mint", "args": {"to": TO, "amount": 1}}, True),
    (EVIL[0], "attest", {}, False),                            # auditors only
    (AUDITOR, "attest_revoke", {"attestation": 1}, True),
])
def test_the_senders_role_is_checked_at_admission(signer, kind, payload, ok):
    mp, _ = make_pool()
    t = make_tx(signer, CHAIN, 0, kind, payload)
    if ok:
        assert mp.add(t)
        return
    with pytest.raises(TxAdmissionError) as e:
        mp.add(t)
    assert (e.value.code, e.value.status) == ("unauthorized", 403) and len(mp) == 0


def test_an_unknown_type_is_refused_at_admission():
    mp, _ = make_pool()
    with pytest.raises(TxAdmissionError) as e:
        mp.add(make_tx(EVIL[0], CHAIN, 0, "teleport", {}))
    assert (e.value.code, e.value.status) == ("unknown_type", 422) and len(mp) == 0


def test_payload_size_is_bounded_per_type():
    mp, _ = make_pool()
    big = transfer(EVIL[0], 0, memo="m" * 20_000)  # within max_tx_bytes, but no transfer is this big
    with pytest.raises(TxAdmissionError) as e:
        mp.add(big)
    assert (e.value.code, e.value.status) == ("payload_too_large", 413)
    assert str(MAX_PAYLOAD_BYTES["transfer"]) in e.value.message and len(mp) == 0
    listing = make_tx(EVIL[0], CHAIN, 0, "listing_create", {"features": ["f" * 64] * 32, "region": "r" * 4000})
    assert mp.add(listing)  # larger types have larger caps (execution judges the content)


# Largest valid payloads (4-byte UTF-8 characters in every text field): each must fit its cap.
_W = "\U0010ffff"
LARGEST = {
    "transfer": {"to": TO, "amount": 2**62, "memo": _W * 256},
    "listing_create": {"resources": {"vcpu_milli": 2**62, "memory_mib": 2**62, "storage_gib": 2**62,
                                     "gpu_count": 1024, "gpu_model": _W * 64},
                       "units": 10**9, "region": _W * 64, "jurisdiction": _W * 64, "features": [_W * 64] * 32,
                       "price": 2**62, "available_from_ms": 2**62, "available_until_ms": 2**62,
                       "sla": {"uptime_permille": 1000, "penalty_permille": 1000, "penalty_cap_permille": 1000},
                       "payee": TO},
    "lease_open": {"listing": 2**62, "units": 10**9, "hours": 10**5, "max_price": 2**62,
                   "require_attested": [_W * 64] * 32, "attested_by": [_W * 64] * 32},
    "lease_accept": {"lease": 2**62, "attestation_digest": b"\xff" * 32, "sealed_access": b"\xff" * 4096},
    "usage_dispute": {"lease": 2**62, "period": 2**62, "reason": _W * 256},
    "usage_resolve": {"lease": 2**62, "period": 2**62, "unit_hours": 2**62, "uptime_permille": 1000,
                      "signer": b"\xff" * 32, "signature": b"\xff" * 64},
    "attest": {"subject_type": "listing", "subject": _W * 64, "claim": _W * 64, "evidence_digest": b"\xff" * 32,
               "expires_ms": 2**62},
    "propose": {"action": "add_validator", "args": {"org": "o" * 32, "key": b"\xff" * 32,
                                                    "p2p": "http://" + _W * 200, "api": "http://" + _W * 200}},
}


@pytest.mark.parametrize("kind", sorted(LARGEST))
def test_the_largest_valid_payload_of_each_type_fits_its_cap(kind):
    cap = MAX_PAYLOAD_BYTES.get(kind, DEFAULT_MAX_PAYLOAD_BYTES)
    assert len(encode(LARGEST[kind])) <= cap


# -- a fuzzed mix of hostile and honest traffic ------------------------------------------------------

OPS = st.lists(st.tuples(st.sampled_from(["add", "add", "add", "commit", "tick"]), st.integers(0, 5),
                         st.integers(0, 12), st.integers(0, 300)), min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_fuzz_shares_accounting_and_ready_txs_survive(ops):
    clock = [0.0]
    one = len(transfer(EVIL[0], 1, memo="").raw)
    mp, members = make_pool(clock, max_bytes=20 * one + 2000, max_txs=40, max_sender_bytes=8 * one + 500,
                            max_org_bytes=12 * one + 800, gapped_ttl_s=100, max_nonce_ahead=12,
                            max_tx_bytes=one + 400)
    signers = EVIL + GOOD
    for op, who, ahead, memo in ops:
        s = signers[who]
        if op == "add":
            ready_before = {h for h in mp.verified_hashes() if mp.is_ready(h)}
            try:
                mp.add(transfer(s, members.nonces.get(s.address, 0) + ahead, memo="m" * memo))
            except (MempoolFull, TxAdmissionError):
                assert {h for h in mp.verified_hashes() if mp.is_ready(h)} == ready_before
            else:
                assert ready_before <= set(mp.verified_hashes())  # eviction only ever takes gapped txs
        elif op == "commit":
            got = mp.take(3)
            for t in got:
                members.nonces[t.tx.sender_address] = t.tx.nonce + 1
            mp.on_commit(got)
        else:
            clock[0] += 40
            mp.on_commit([])
        assert mp.bytes == sum(len(mp.get(h).raw) for h in mp.verified_hashes()) <= mp.max_bytes
        assert len(mp) <= mp.max_txs
        per_org: dict[str, int] = {}
        for h in mp.verified_hashes():
            t = mp.get(h)
            per_org[members.members[t.tx.sender_address]["org"]] = per_org.get(
                members.members[t.tx.sender_address]["org"], 0) + len(t.raw)
        assert all(v <= mp.org_share_bytes for v in per_org.values())
        assert per_org == {k: v for k, v in mp.org_bytes().items() if v}


@settings(max_examples=100, deadline=None)
@given(memo=st.text(st.characters(codec="utf-8"), max_size=300),  # text a tx can carry: no lone surrogates
       nonce=st.integers(0, 2**64 - 1), expiry=st.integers(0, 2**64 - 1),
       chain=st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=40))
def test_fuzz_the_payload_size_bound_is_never_below_the_real_size_and_close_to_it(memo, nonce, expiry, chain):
    from node.mempool import _payload_size_bound
    stx = make_tx(EVIL[0], chain, nonce, "transfer", {"to": TO, "amount": 1, "memo": memo}, expiry)
    real = len(encode(stx.tx.payload))
    assert real <= _payload_size_bound(stx) <= real + 24
