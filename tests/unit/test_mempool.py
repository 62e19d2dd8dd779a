"""Mempool: admission checks, nonce order, bounds, fairness, re-check after commit."""

from __future__ import annotations

import pytest

from ledger.crypto import Signer
from ledger.encoding import sha256
from ledger.tx import make_tx

from node.errors import MempoolFull, TxAdmissionError
from node.mempool import Mempool, check_raw

CHAIN = "cxl-test"
A, B, C, STRANGER = (Signer(sha256(x)) for x in (b"a", b"b", b"c", b"stranger"))
MEMBERS = {A.address, B.address, C.address}


class FakeState:
    def __init__(self):
        self.nonces: dict[str, int] = {}
        self.members = set(MEMBERS)

    def lookup(self, address: str) -> tuple[bool, int]:
        return address in self.members, self.nonces.get(address, 0)


def tx(signer, nonce, amount=1, chain=CHAIN, memo=""):
    payload = {"to": B.address, "amount": amount}
    if memo:
        payload["memo"] = memo
    return make_tx(signer, chain, nonce, "transfer", payload)


def pool(state=None, **kw) -> tuple[Mempool, FakeState]:
    state = state or FakeState()
    return Mempool(CHAIN, state.lookup, **kw), state


# -- stateless ---------------------------------------------------------------------------

def test_check_raw_accepts_a_good_tx():
    t = tx(A, 0)
    assert check_raw(t.raw, CHAIN, 65536).hash == t.hash


@pytest.mark.parametrize("mangle,code,status", [
    (lambda raw: raw[:-3], "bad_encoding", 400),                  # truncated
    (lambda raw: raw + b"\x00", "bad_encoding", 400),             # trailing bytes
    (lambda raw: b"\xc1", "bad_encoding", 400),                   # never-used msgpack byte
    (lambda raw: raw[:-1] + bytes([raw[-1] ^ 1]), "bad_signature", 401),
])
def test_check_raw_refuses(mangle, code, status):
    with pytest.raises(TxAdmissionError) as e:
        check_raw(mangle(tx(A, 0).raw), CHAIN, 65536)
    assert (e.value.code, e.value.status) == (code, status)


def test_check_raw_wrong_chain_and_size():
    with pytest.raises(TxAdmissionError) as e:
        check_raw(tx(A, 0, chain="other").raw, CHAIN, 65536)
    assert e.value.code == "wrong_chain" and e.value.status == 422
    with pytest.raises(TxAdmissionError) as e:
        check_raw(tx(A, 0).raw, CHAIN, 50)
    assert e.value.code == "tx_too_large" and e.value.status == 413


# -- stateful admission --------------------------------------------------------------------

def test_unknown_sender_refused():
    mp, _ = pool()
    with pytest.raises(TxAdmissionError) as e:
        mp.add(tx(STRANGER, 0))
    assert (e.value.code, e.value.status) == ("unknown_sender", 403)
    assert len(mp) == 0


def test_nonce_used_conflict_and_too_far():
    mp, st = pool(max_nonce_ahead=10)
    st.nonces[A.address] = 3
    with pytest.raises(TxAdmissionError) as e:
        mp.add(tx(A, 2))
    assert (e.value.code, e.value.status) == ("nonce_used", 409)
    assert mp.add(tx(A, 3))
    with pytest.raises(TxAdmissionError) as e:
        mp.add(tx(A, 3, amount=2))  # same nonce, different tx
    assert (e.value.code, e.value.status) == ("nonce_conflict", 409)
    with pytest.raises(TxAdmissionError) as e:
        mp.add(tx(A, 14))
    assert e.value.code == "nonce_too_far"
    assert mp.add(tx(A, 13))
    assert len(mp) == 2


def test_duplicate_is_suppressed():
    mp, _ = pool()
    t = tx(A, 0)
    assert mp.add(t) is True
    assert mp.add(t) is False
    assert len(mp) == 1 and mp.bytes == len(t.raw)


# -- ordering -------------------------------------------------------------------------------

def test_gap_waits_until_filled():
    mp, _ = pool()
    t0, t1, t2 = tx(A, 0), tx(A, 1), tx(A, 2)
    mp.add(t2)
    mp.add(t1)
    assert mp.ready_count() == 0 and mp.take(10) == []
    assert not mp.is_ready(t1.hash)
    mp.add(t0)
    assert mp.ready_count() == 3
    assert [t.tx.nonce for t in mp.take(10)] == [0, 1, 2]
    assert mp.pending_nonce(A.public_key) == 3


def test_take_is_fair_and_respects_limits():
    mp, _ = pool()
    for n in range(5):
        mp.add(tx(A, n))
        mp.add(tx(C, n))
    got = mp.take(4)
    assert len(got) == 4
    senders = [t.tx.sender for t in got]
    assert senders.count(A.public_key) == 2 and senders.count(C.public_key) == 2
    for s in (A, C):  # nonce order per sender
        nonces = [t.tx.nonce for t in got if t.tx.sender == s.public_key]
        assert nonces == sorted(nonces) == list(range(len(nonces)))
    size = len(tx(A, 0).raw)
    assert len(mp.take(100, max_bytes=3 * size + size // 2)) == 3
    assert len(mp) == 10  # take removes nothing


def test_take_rotates_start_between_calls():
    mp, _ = pool()
    mp.add(tx(A, 0))
    mp.add(tx(C, 0))
    first = {mp.take(1)[0].tx.sender for _ in range(4)}
    assert first == {A.public_key, C.public_key}


# -- bounds ------------------------------------------------------------------------------------

def test_global_count_bound_is_503_and_never_grows():
    mp, _ = pool(max_txs=3)
    for n in range(3):
        mp.add(tx(A, n))
    with pytest.raises(MempoolFull) as e:
        mp.add(tx(C, 0))
    assert (e.value.code, e.value.status) == ("mempool_full", 503)
    assert len(mp) == 3


def test_global_byte_bound():
    size = len(tx(A, 0).raw)
    mp, _ = pool(max_bytes=2 * size + 1)
    mp.add(tx(A, 0))
    mp.add(tx(A, 1))
    with pytest.raises(MempoolFull):
        mp.add(tx(C, 0))
    assert mp.bytes <= 2 * size + 1


def test_per_sender_quota_is_429():
    mp, _ = pool(max_per_sender=2)
    mp.add(tx(A, 0))
    mp.add(tx(A, 1))
    with pytest.raises(MempoolFull) as e:
        mp.add(tx(A, 2))
    assert (e.value.code, e.value.status) == ("sender_quota", 429)
    assert mp.add(tx(C, 0))  # others unaffected


# -- after a commit -------------------------------------------------------------------------------

def test_on_commit_removes_included_and_drops_stale():
    mp, st = pool()
    a = [tx(A, n) for n in range(4)]
    for t in a:
        mp.add(t)
    other = tx(A, 2, amount=99)  # a competing nonce-2 tx committed elsewhere (e.g. via another node)
    st.nonces[A.address] = 3
    dropped = mp.on_commit([a[0], a[1], other], next_height=2)
    assert [t.hash for t in dropped] == [a[2].hash]
    assert len(mp) == 1 and mp.get(a[3].hash) is not None
    assert mp.ready_count() == 1 and mp.bytes == len(a[3].raw)


def test_on_commit_drops_removed_members_and_expired():
    mp, st = pool()
    mp.add(tx(A, 0))
    mp.add(make_tx(C, CHAIN, 0, "transfer", {"to": B.address, "amount": 1}, expiry=5))
    st.members.discard(A.address)
    dropped = mp.on_commit([], next_height=6)
    assert len(dropped) == 2 and len(mp) == 0 and mp.bytes == 0


def test_oldest_ready_follows_admission_time():
    clock = [100.0]
    state = FakeState()
    mp = Mempool(CHAIN, state.lookup, clock=lambda: clock[0])
    mp.add(tx(A, 1))
    clock[0] = 101.0
    mp.add(tx(C, 0))
    assert mp.oldest_ready() == 101.0  # A's tx is waiting for nonce 0, not ready
    clock[0] = 102.0
    mp.add(tx(A, 0))
    assert mp.oldest_ready() == 100.0  # now ready; it has waited since its admission


def test_ready_count_matches_brute_force_under_random_operations():
    import random

    rng = random.Random(7)
    mp, st = pool(max_nonce_ahead=20)
    signers = [A, B, C]
    for _ in range(400):
        s = rng.choice(signers)
        op = rng.random()
        if op < 0.7:
            try:
                mp.add(tx(s, st.nonces.get(s.address, 0) + rng.randrange(0, 8)))
            except TxAdmissionError:
                pass
        elif op < 0.85:
            got = mp.take(rng.randrange(1, 6))
            for t in got:  # commit what a block took
                st.nonces[t.tx.sender_address] = t.tx.nonce + 1
            mp.on_commit(got)
        else:
            st.nonces[s.address] = st.nonces.get(s.address, 0) + rng.randrange(0, 3)  # committed elsewhere
            mp.on_commit([])
        brute = 0
        for sender in mp._senders.values():
            n = sender.next_nonce
            while n in sender.by_nonce:
                n += 1
            brute += n - sender.next_nonce
        assert mp.ready_count() == brute
        assert mp.bytes == sum(len(e.stx.raw) for e in mp._by_hash.values())
        assert len(mp.take(10_000)) == brute


def test_expired_tx_is_refused_at_admission():
    mp, _ = pool()
    t = make_tx(A, CHAIN, 0, "transfer", {"to": B.address, "amount": 1}, expiry=4)
    with pytest.raises(TxAdmissionError) as e:
        mp.add(t, next_height=5)
    assert (e.value.code, e.value.status) == ("expired", 422)
    assert mp.add(t, next_height=4)
