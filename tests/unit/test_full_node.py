"""Full nodes in the runner (node/follower.py): a node whose key is not a validator
follows certified blocks, verifying each certificate against the validator set it
tracks (set changes included) and re-executing each block; it never signs. Role
switches: a removed validator goes on as a full node, a full node whose key joins the
set starts voting at its activation height."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from ledger import accounts
from ledger.block import Certificate, commit_signing_bytes
from ledger.crypto import Signer
from ledger.encoding import sha256
from ledger.store.memory import MemoryStore
from node.follower import FollowRefused, apply_followed, role_change
from node.mempool import Mempool
from node.runner import Runner, load_signed_state
from node.transport import NullTransport
from tests.unit.test_governance import NEWKEY, Net

OUTSIDER = Signer(sha256(b"full-node-outsider"))


class ServingTransport(NullTransport):
    """Serves `blocks` (block_raw, cert_raw) for heights 1.. and records what is sent."""

    def __init__(self):
        super().__init__()
        self.blocks: list[tuple[bytes, bytes]] = []
        self.messages: list[bytes] = []

    def broadcast(self, message: bytes) -> None:
        self.messages.append(message)

    def send(self, peer_key: bytes, message: bytes) -> None:
        self.messages.append(message)

    async def fetch_blocks(self, from_height, peer_key, limit):
        return self.blocks[from_height - 1:][:limit]


def served(ref, heights) -> list[tuple[bytes, bytes]]:
    return [(ref.get_block_raw(h), ref.get_cert(h).encode()) for h in heights]


def follower_for(g: Net, signer: Signer, **kw):
    chain = g.net.chain(MemoryStore())
    mp = Mempool(chain.chain_id, lambda a: (True, accounts.next_nonce(chain.state(), a)))
    transport = ServingTransport()
    runner = Runner(chain, mp, signer, transport, follow_interval_ms=10, sync_interval_ms=50, **kw)
    return runner, chain, transport


async def until(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def four_validator_chain(blocks: int = 3) -> Net:
    g = Net(n_validators=4)
    for _ in range(blocks):
        g.block()
    return g


# -- following ------------------------------------------------------------------------------

async def test_a_full_node_follows_verifies_and_never_signs():
    g = four_validator_chain(3)
    runner, chain, tr = follower_for(g, OUTSIDER)
    tr.blocks = served(g.chain, (1, 2, 3))
    assert runner.role == "full"
    runner.start()
    try:
        await until(lambda: chain.height == 3)
        assert chain.head.block_hash == g.chain.head.block_hash and chain.head.state_root == g.chain.head.state_root
        # a consensus message reaches no core: counted and dropped
        runner.on_consensus_bytes(g.net.validators[0].public_key, b"\x00")
        assert runner.refused_consensus == 1
        assert tr.messages == [] and load_signed_state(chain.store) is None
        assert runner.follow_refusals == 0
    finally:
        await runner.stop()


def short_cert(g: Net, height: int) -> Certificate:
    """Two of the four validators: below the quorum of three."""
    block = g.chain.get_block(height)
    msg = commit_signing_bytes(g.chain.chain_id, 0, height, block.hash)
    return Certificate.build(height, 0, block.hash, {v.public_key: v.sign(msg) for v in g.net.validators[:2]})


def outsider_cert(g: Net, height: int) -> Certificate:
    """Three signatures, but from keys that are not validators."""
    block = g.chain.get_block(height)
    msg = commit_signing_bytes(g.chain.chain_id, 0, height, block.hash)
    keys = [Signer(sha256(b"x%d" % i)) for i in range(3)]
    return Certificate.build(height, 0, block.hash, {k.public_key: k.sign(msg) for k in keys})


@pytest.mark.parametrize("bad", ["short", "outsiders", "other_block"])
async def test_a_block_with_a_bad_certificate_is_refused(bad):
    g = four_validator_chain(3)
    runner, chain, tr = follower_for(g, OUTSIDER)
    cert = {"short": lambda: short_cert(g, 2), "outsiders": lambda: outsider_cert(g, 2),
            "other_block": lambda: g.chain.get_cert(3)}[bad]()
    tr.blocks = served(g.chain, (1,)) + [(g.chain.get_block_raw(2), cert.encode())] + served(g.chain, (3,))
    runner.start()
    try:
        await until(lambda: runner.follow_refusals >= 2)  # refused, asked again, refused again
        assert chain.height == 1
        assert "bad_certificate" in runner.last_follow_error
        tr.blocks = served(g.chain, (1, 2, 3))  # an honest peer: following goes on
        await until(lambda: chain.height == 3)
        assert chain.head.state_root == g.chain.head.state_root
    finally:
        await runner.stop()


def test_apply_followed_refuses_a_block_that_does_not_re_execute_to_its_header():
    g = four_validator_chain(2)
    chain = g.net.chain(MemoryStore())
    block1 = g.chain.get_block(1)
    apply_followed(chain, block1, g.chain.get_cert(1))
    # block 2 with a tampered state root, certified by a quorum: the certificate is fine,
    # the re-execution is not
    import dataclasses
    block2 = g.chain.get_block(2)
    forged = dataclasses.replace(block2, header=dataclasses.replace(block2.header, state_root=b"\x07" * 32))
    with pytest.raises(FollowRefused) as err:
        apply_followed(chain, forged, g.certify(forged))
    assert err.value.code == "bad_state_root" and chain.height == 1


def join_chain() -> tuple[Net, int]:
    """One validator; governance adds NEWKEY. Returns the net and the first height NEWKEY votes at."""
    g = Net(n_validators=1)
    g.block()
    g.pass_("add_validator", {"org": "org2", "key": NEWKEY.public_key,
                              "p2p": "http://127.0.0.1:9", "api": "http://127.0.0.1:10"})
    g.block()  # installs the new set at its end
    joined_at = g.chain.height + 1
    assert NEWKEY.public_key in g.chain.validator_keys
    for _ in range(3):
        g.block()  # certified by both (Net.certify signs with every key of the set)
    return g, joined_at


async def test_a_full_node_tracks_validator_set_changes():
    g, joined_at = join_chain()
    top = g.chain.height
    runner, chain, tr = follower_for(g, OUTSIDER)
    # after the change the old set alone (one of two) is no quorum: refused
    bad = Certificate.build(joined_at, 0, g.chain.get_block(joined_at).hash, {
        g.net.validators[0].public_key: g.net.validators[0].sign(
            commit_signing_bytes(g.chain.chain_id, 0, joined_at, g.chain.get_block(joined_at).hash))})
    tr.blocks = served(g.chain, range(1, joined_at)) + [(g.chain.get_block_raw(joined_at), bad.encode())]
    runner.start()
    try:
        await until(lambda: runner.follow_refusals >= 1)
        assert chain.height == joined_at - 1 and "bad_certificate" in runner.last_follow_error
        tr.blocks = served(g.chain, range(1, top + 1))
        await until(lambda: chain.height == top)
        assert chain.validator_keys == g.chain.validator_keys and chain.head.state_root == g.chain.head.state_root
    finally:
        await runner.stop()


# -- role switches ----------------------------------------------------------------------------

def test_role_change_is_decided_by_the_set_for_the_next_height():
    a, b = b"\x01" * 32, b"\x02" * 32
    assert role_change("validator", [a, b], a, 5) is None
    removed = role_change("validator", [b], a, 5)
    assert removed.removed and removed.new == "full" and removed.height == 5
    joined = role_change("full", [a, b], a, 9)
    assert joined.joined and joined.new == "validator" and joined.height == 9


async def test_a_full_node_whose_key_joins_the_set_starts_voting_at_its_activation_height():
    g, joined_at = join_chain()
    runner, chain, tr = follower_for(g, NEWKEY)
    tr.blocks = served(g.chain, range(1, joined_at))
    assert runner.role == "full"
    runner.start()
    try:
        await until(lambda: runner.role == "validator")
        assert chain.height == joined_at - 1
        assert runner.role_changes == [{"role": "validator", "height": joined_at}]
        # a fresh core at the activation height, with this key among its voters
        assert runner.replica.height == joined_at and NEWKEY.public_key in runner.replica.vset
        # and it now takes part: the rest of the chain arrives through the core
        tr.blocks = served(g.chain, range(1, g.chain.height + 1))
        runner.call_soon(lambda: runner._sync_check())
        await until(lambda: chain.height == g.chain.height)
        assert chain.head.state_root == g.chain.head.state_root
    finally:
        await runner.stop()


async def test_a_removed_validator_goes_on_as_a_full_node_and_says_so(caplog):
    g = Net(n_validators=4)
    v3 = g.net.validators[3]
    g.pool = g.net.validators[:3]  # v3 signs no certificate: its start-up sync does not wait for it
    g.block()
    g.pass_("remove_validator", {"key": v3.public_key})
    still = g.chain.height  # v3 is in the set deciding still+1
    g.block()  # installs the set without v3 at its end
    removed_at = g.chain.height + 1
    for _ in range(3):
        g.block()
    runner, chain, tr = follower_for(g, v3)
    tr.blocks = served(g.chain, range(1, still + 1))  # start-up sync: up to where v3 still votes
    assert runner.role == "validator"
    caplog.set_level(logging.WARNING, logger=runner.log.name)
    runner.start()
    try:
        await until(lambda: chain.height == still and runner._polling)
        assert runner.role == "validator"
        tr.blocks = served(g.chain, range(1, g.chain.height + 1))  # the core commits the next block
        runner.call_soon(lambda: runner._sync_check())
        await until(lambda: runner.role == "full")
        assert runner.role_changes == [{"role": "full", "height": removed_at}]
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "removed from the validator set" in r.message]
        assert errors and str(removed_at) in errors[0].message
        # it keeps following (as a full node now) to the head, and feeds no core
        await until(lambda: chain.height == g.chain.height)
        assert chain.head.state_root == g.chain.head.state_root
        runner.on_consensus_bytes(g.net.validators[0].public_key, b"\x00")
        assert runner.refused_consensus == 1
    finally:
        await runner.stop()


async def test_a_validator_removed_while_it_was_down_starts_as_a_full_node():
    g = Net(n_validators=2)
    v0, v1 = g.net.validators
    g.pass_("remove_validator", {"key": v1.public_key})
    g.block()
    removed_at = g.chain.height + 1
    g.net.validators = [v0]
    g.block()
    runner, chain, tr = follower_for(g, v1)
    tr.blocks = served(g.chain, range(1, g.chain.height + 1))
    runner.start()
    try:
        await until(lambda: runner.role == "full")
        await until(lambda: chain.height == g.chain.height)
        # the height it left the set at, found in the chain's record of set changes
        assert runner.role_changes == [{"role": "full", "height": removed_at}]
        assert tr.messages == []  # it never started a core, so it signed nothing
    finally:
        await runner.stop()
