"""Who may hold a p2p session, and as what (PeerNetwork.admission), and the block
request budget of a full-node session (p2p/full_sessions.py). No sockets."""

from __future__ import annotations

import pytest

from ledger.crypto import Signer
from p2p import wire
from p2p.full_sessions import RequestBudget
from p2p.network import PeerNetwork
from p2p.testing import FakeInbox

ME = Signer(b"\x01" * 32)
VAL = Signer(b"\x02" * 32)
FULL = Signer(b"\x03" * 32)
STRANGER = Signer(b"\x04" * 32)


def network() -> PeerNetwork:
    inbox = FakeInbox()
    inbox.full_nodes.add(FULL.public_key)
    validators = [{"key": k.public_key, "org": f"o{i}", "p2p": f"http://127.0.0.1:{9000 + i}"}
                  for i, k in enumerate((ME, VAL))]
    return PeerNetwork(inbox, ME, "127.0.0.1", 0, validators)


@pytest.mark.parametrize("who, role", [
    (VAL, "validator"),      # a current validator votes
    (FULL, "full"),          # a key the node admits as a full node follows, never votes
    (STRANGER, None),        # anyone else: no session
    (ME, None),              # our own key never
])
def test_admission_by_key(who, role):
    assert network().admission(who.public_key) == role


def test_a_validator_removed_from_the_set_is_a_full_node_if_the_node_admits_it():
    net = network()
    net.inbox.full_nodes.add(VAL.public_key)  # the node admits former validators
    net.set_validators([{"key": ME.public_key, "org": "o0", "p2p": "http://127.0.0.1:9000"}])
    assert net.admission(VAL.public_key) == "full"
    net.inbox.full_nodes.discard(VAL.public_key)
    assert net.admission(VAL.public_key) is None


def test_the_refusal_of_an_unknown_key_says_why():
    hello = wire.decode_hello(wire.encode_hello(STRANGER, "cxl-test", ME.public_key, b"c" * 32, 1000, b"n" * 32))
    with pytest.raises(Exception) as err:
        wire.check_hello(hello, chain_id="cxl-test", server_key=ME.public_key, issued_challenge=b"c" * 32,
                         now_ms=1000, window_ms=1000, is_validator=lambda k: network().admission(k) is not None)
    assert "not a validator or listed full node" in str(err.value)


def test_a_full_node_dials_the_validators_and_its_extra_peers_a_validator_only_validators():
    other_full = {"key": STRANGER.public_key, "org": "x", "p2p": "http://127.0.0.1:9100"}
    validator = network()
    validator.set_extra_peers([other_full])
    assert set(validator._links) == {VAL.public_key}  # validators do not dial full nodes
    inbox = FakeInbox()
    follower = PeerNetwork(inbox, FULL, "127.0.0.1", 0, [
        {"key": k.public_key, "org": "o", "p2p": f"http://127.0.0.1:{9000 + i}"} for i, k in enumerate((ME, VAL))])
    follower.set_extra_peers([other_full, {"key": FULL.public_key, "p2p": "http://127.0.0.1:1"}])
    assert set(follower._links) == {ME.public_key, VAL.public_key, STRANGER.public_key}
    roles = {p["key"]: p["role"] for p in follower.peer_status()}
    assert roles[STRANGER.public_key.hex()] == "full" and roles[VAL.public_key.hex()] == "validator"


def test_request_budget_allows_a_burst_then_paces_at_the_rate():
    now = [100.0]
    budget = RequestBudget(rate=10.0, burst=3, clock=lambda: now[0])
    assert [budget.delay() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert budget.delay() == pytest.approx(0.1)      # the 4th waits one token's time
    now[0] += 1.0                                     # a second later: 10 tokens, capped at the burst
    assert [budget.delay() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert budget.delay() > 0
