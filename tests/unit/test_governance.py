"""Governance: proposals approved by 2/3 of organisations, each action's effect."""

from __future__ import annotations

import dataclasses

import pytest

from genesis.testnet import make_testnet
from ledger import accounts, governance
from ledger.block import Certificate, commit_signing_bytes, next_validators_hash, validator_set_hash
from ledger.crypto import Signer
from ledger.encoding import sha256
from ledger.errors import BlockInvalid
from ledger.tx import make_tx

NEWKEY = Signer(sha256(b"new-key"))


class Net:
    """Four organisations, one validator (run by org1), blocks committed one call at a time."""

    def __init__(self, n_validators: int = 1, **kw):
        self.net = make_testnet(n_orgs=4, n_validators=n_validators, **kw)
        self.chain = self.net.chain()
        self.pool = list(self.net.validators) + [NEWKEY]  # keys that may join the set

    def certify(self, block):
        """Every key of the pool that is in the deciding set signs (a full certificate)."""
        keys = set(self.chain.validator_keys)
        votes = {v.public_key: v.sign(commit_signing_bytes(self.chain.chain_id, 0, block.height, block.hash))
                 for v in self.pool if v.public_key in keys}
        return Certificate.build(block.height, 0, block.hash, votes)

    def admin(self, org: str) -> Signer:
        return self.net.admins[org]

    def block(self, *calls, proposer: bytes | None = None):
        """calls: (signer, kind, payload). Returns the receipts (all txs must be included)."""
        nonces: dict[str, int] = {}
        txs = []
        state = self.chain.state()
        for signer, kind, payload in calls:
            n = nonces.get(signer.address, accounts.next_nonce(state, signer.address))
            nonces[signer.address] = n + 1
            txs.append(make_tx(signer, self.chain.chain_id, n, kind, payload))
        c = self.chain
        # with no transactions, a heartbeat block: at the earliest time it is due (ledger/heartbeat.py)
        later = 1000 if txs else max(1000, c.next_heartbeat_ms() - c.head.time_ms)
        block, _ = c.build_block(txs, time_ms=c.head.time_ms + later, view=0,
                                 proposer=proposer or self.net.validators[0].public_key,
                                 last_cert=c.get_cert(c.height) if c.height else None)
        result = c.validate_block(block)
        assert len(result.txs) == len(txs)
        c.commit_block(block, self.certify(block), result)
        return result.receipts

    def propose(self, action: str, args: dict, org: str = "org1", **extra):
        r = self.block((self.admin(org), "propose", {"action": action, "args": args, **extra}))[0]
        assert r.ok, r
        return r.result["proposal"]

    def vote(self, pid: int, org: str, approve: bool = True):
        return self.block((self.admin(org), "vote", {"proposal": pid, "approve": approve}))[0]

    def status(self, pid: int) -> dict:
        return governance.get_proposal(self.chain.state(), pid)

    def pass_(self, action: str, args: dict):
        """Propose (org1 votes yes), org2 yes: still open; org3 yes: executed."""
        pid = self.propose(action, args)
        assert self.status(pid)["status"] == "open"
        r = self.vote(pid, "org2")
        assert r.ok and r.result["status"] == "open", "passed with 2 of 4 organisations"
        assert self.status(pid)["status"] == "open"
        r = self.vote(pid, "org3")
        assert r.ok, r
        return pid, r

    @property
    def state(self):
        return self.chain.state()


@pytest.fixture
def g():
    return Net()


def test_threshold_is_two_thirds_of_orgs(g):
    before = accounts.supply(g.state)
    pid, r = g.pass_("mint", {"to": NEWKEY.address, "amount": 77})
    assert r.result["status"] == "executed"
    p = g.status(pid)
    assert p["status"] == "executed" and p["decided_height"] == g.chain.height
    assert p["votes"] == {"org1": True, "org2": True, "org3": True}
    assert accounts.balance(g.state, NEWKEY.address) == 77
    assert accounts.supply(g.state) == before + 77
    # a late vote on a decided proposal is refused
    r = g.vote(pid, "org4")
    assert r.code == "proposal_closed"
    assert accounts.supply(g.state) == before + 77


def test_mint_only_after_threshold(g):
    before = accounts.supply(g.state)
    pid = g.propose("mint", {"to": NEWKEY.address, "amount": 5})
    g.vote(pid, "org2")
    assert accounts.supply(g.state) == before and accounts.balance(g.state, NEWKEY.address) == 0


def test_rejected_once_approval_is_impossible(g):
    pid = g.propose("mint", {"to": NEWKEY.address, "amount": 5})
    r = g.vote(pid, "org2", approve=False)
    assert r.result["status"] == "open"  # 1 yes, 1 no: 3 yes still possible
    r = g.vote(pid, "org3", approve=False)
    assert r.result["status"] == "rejected"  # at most 2 yes of 4 now
    assert g.status(pid)["status"] == "rejected"
    assert g.vote(pid, "org4").code == "proposal_closed"
    assert accounts.balance(g.state, NEWKEY.address) == 0


def test_double_vote_refused(g):
    pid = g.propose("mint", {"to": NEWKEY.address, "amount": 5})
    r = g.vote(pid, "org1")
    assert r.code == "already_voted"
    g.vote(pid, "org2")
    assert g.vote(pid, "org2").code == "already_voted"
    assert g.status(pid)["status"] == "open"


def test_second_admin_of_an_org_cannot_vote_twice_for_it(g):
    second = Signer(sha256(b"second admin"))
    g.pass_("add_member", {"org": "org2", "key": second.public_key, "role": "admin"})
    pid = g.propose("mint", {"to": NEWKEY.address, "amount": 5})
    assert g.vote(pid, "org2").ok
    r = g.block((second, "vote", {"proposal": pid, "approve": True}))[0]
    assert r.code == "already_voted"
    assert g.status(pid)["status"] == "open"


@pytest.mark.parametrize("role", ["operator", "auditor"])
def test_non_admin_refused(g, role):
    signer = (g.net.operators if role == "operator" else g.net.auditors)["org2"]
    pid = g.propose("mint", {"to": NEWKEY.address, "amount": 5})
    assert g.block((signer, "vote", {"proposal": pid, "approve": True}))[0].code == "unauthorized"
    assert g.block((signer, "propose", {"action": "mint", "args": {"to": NEWKEY.address, "amount": 1}}))[0].code \
        == "unauthorized"
    assert g.status(pid)["votes"] == {"org1": True}
    stranger = Signer(sha256(b"stranger"))
    assert g.block((stranger, "vote", {"proposal": pid, "approve": True}))[0].code == "unknown_sender"


def test_expired_proposal_refused(g):
    pid = g.propose("mint", {"to": NEWKEY.address, "amount": 5}, expires_in=1)
    assert g.vote(pid, "org2").ok  # height created+1: still open
    r = g.vote(pid, "org3")
    assert r.code == "proposal_expired"
    assert accounts.balance(g.state, NEWKEY.address) == 0


def test_unknown_proposal(g):
    assert g.vote(42, "org2").code == "unknown_proposal"


def test_failed_execution_recorded(g):
    pid, r = g.pass_("add_org", {"org": "org2", "name": "Dup", "admin": NEWKEY.public_key})
    assert r.ok and r.result["status"] == "failed"
    p = g.status(pid)
    assert p["status"] == "failed" and p["reason"].startswith("org_exists")
    assert accounts.org(g.state, "org2")["name"] == "Organisation 2"
    assert accounts.member(g.state, NEWKEY.address) is None


def test_add_org(g):
    g.pass_("add_org", {"org": "org5", "name": "Five", "admin": NEWKEY.public_key.hex()})
    assert accounts.org(g.state, "org5") == {"id": "org5", "name": "Five"}
    assert accounts.member(g.state, NEWKEY.address) == {"org": "org5", "role": "admin", "key": NEWKEY.public_key}
    # five organisations now: three yes votes no longer pass (3*3 < 2*5), four do
    pid, r = g.pass_("mint", {"to": NEWKEY.address, "amount": 1})
    assert r.result["status"] == "open"
    assert g.block((NEWKEY, "vote", {"proposal": pid, "approve": True}))[0].result["status"] == "executed"


def test_remove_org(g):
    op4 = g.net.operators["org4"]
    g.pass_("remove_org", {"org": "org4"})
    assert accounts.org(g.state, "org4") is None
    assert accounts.members_of(g.state, "org4") == []
    assert accounts.member(g.state, g.admin("org4").address) is None
    r = g.block((op4, "transfer", {"to": NEWKEY.address, "amount": 1}))[0]
    assert r.code == "unknown_sender"


def test_remove_org_with_validator_fails(g):
    pid, r = g.pass_("remove_org", {"org": "org1"})
    assert r.result["status"] == "failed" and "org_has_validators" in g.status(pid)["reason"]
    assert accounts.org(g.state, "org1") is not None


def test_add_and_remove_member(g):
    g.pass_("add_member", {"org": "org2", "key": NEWKEY.public_key, "role": "operator"})
    assert accounts.member(g.state, NEWKEY.address)["role"] == "operator"
    funder = g.net.operators["org1"]
    assert g.block((funder, "transfer", {"to": NEWKEY.address, "amount": 10}))[0].ok
    assert g.block((NEWKEY, "transfer", {"to": funder.address, "amount": 1}))[0].ok
    g.pass_("remove_member", {"address": NEWKEY.address})
    assert accounts.member(g.state, NEWKEY.address) is None
    assert g.block((NEWKEY, "transfer", {"to": funder.address, "amount": 1}))[0].code == "unknown_sender"


def test_add_validator_takes_effect_after_delay(g):
    old = g.chain.validator_keys
    pid, r = g.pass_("add_validator", {"org": "org2", "key": NEWKEY.public_key,
                                       "p2p": "http://10.0.0.2:26601", "api": "http://10.0.0.2:26701"})
    assert r.result["status"] == "executed"
    h = g.chain.height
    delay = g.chain.params["validator_delay"]
    assert delay == 2
    assert g.state.get(b"validators_next")["height"] == h + delay
    assert g.chain.validator_keys == old  # height h+1 is still decided by the old set
    # the new key may not propose block h+1
    c = g.chain
    block, _ = c.build_block([], time_ms=c.head.time_ms + 1, view=0, proposer=NEWKEY.public_key,
                             last_cert=c.get_cert(h))
    with pytest.raises(BlockInvalid) as exc:
        c.validate_block(block)
    assert exc.value.code == "bad_proposer"
    g.block()  # height h+1: the change is installed at its end
    assert c.height == h + 1
    assert c.validator_keys == old + [NEWKEY.public_key]
    assert g.state.get(b"validators_next") is None
    # height h+2 is decided by the new set: the new key may propose, and the header commits to it
    g.block(proposer=NEWKEY.public_key)
    assert c.get_block(h + 2).header.validator_set_hash == validator_set_hash(old + [NEWKEY.public_key])
    assert c.get_block(h + 1).header.validator_set_hash == validator_set_hash(old)
    # block h+1 installs the new set: its header commits to it, and the index lists it
    new = old + [NEWKEY.public_key]
    assert c.get_block(h).header.next_validators_hash == next_validators_hash(old)
    assert c.get_block(h + 1).header.next_validators_hash == next_validators_hash(new)
    assert next_validators_hash(new) != next_validators_hash(old)
    [(at, vset)] = c.validator_changes(0, 10)
    assert at == h + 1 and [v["key"] for v in vset] == new
    assert c.validator_changes(h + 2, 10) == []


def test_remove_validator_takes_effect_after_delay():
    g = Net(n_validators=2)
    v0, v1 = (v.public_key for v in g.net.validators)
    g.pass_("remove_validator", {"key": v1})
    h = g.chain.height
    assert g.chain.validator_keys == [v0, v1]
    g.block()
    assert g.chain.height == h + 1 and g.chain.validator_keys == [v0]
    g.net.validators = g.net.validators[:1]
    g.block()
    pid, r = g.pass_("remove_validator", {"key": v0})
    assert r.result["status"] == "failed" and "last_validator" in g.status(pid)["reason"]
    pid, r = g.pass_("remove_validator", {"key": NEWKEY.public_key})
    assert r.result["status"] == "failed" and "unknown_validator" in g.status(pid)["reason"]
    g.block()
    g.block()
    assert g.chain.validator_keys == [v0]


def test_set_param(g):
    g.pass_("set_param", {"name": "max_block_txs", "value": 3})
    assert g.chain.params["max_block_txs"] == 3
    g.pass_("set_param", {"name": "validator_delay", "value": 5})
    g.pass_("add_validator", {"org": "org2", "key": NEWKEY.public_key,
                              "p2p": "http://10.0.0.2:1", "api": "http://10.0.0.2:2"})
    assert g.state.get(b"validators_next")["height"] == g.chain.height + 5


@pytest.mark.parametrize("action, args", [
    ("teleport", {}),
    ("set_param", {"name": "max_block_txs", "value": 0}),
    ("set_param", {"name": "max_block_txs", "value": True}),
    ("set_param", {"name": "nonsense", "value": 1}),
    ("mint", {"to": "nobody", "amount": 1}),
    ("mint", {"to": NEWKEY.address, "amount": 0}),
    ("add_org", {"org": "Bad Id", "name": "x", "admin": NEWKEY.public_key}),
    ("add_org", {"org": "ok", "name": "", "admin": NEWKEY.public_key}),
    ("add_org", {"org": "ok", "name": "x", "admin": b"short"}),
    ("add_org", {"org": "ok", "name": "x", "admin": "zz"}),
    ("add_org", {"org": "ok\n", "name": "x", "admin": NEWKEY.public_key}),
    ("add_member", {"org": "org2", "key": NEWKEY.public_key, "role": "root"}),
    ("add_validator", {"org": "org2", "key": NEWKEY.public_key, "p2p": "ftp://x", "api": "http://x"}),
    ("add_validator", {"org": "org2", "key": NEWKEY.public_key, "p2p": "http://x\n", "api": "http://x"}),
])
def test_bad_proposals_refused(g, action, args):
    r = g.block((g.admin("org1"), "propose", {"action": action, "args": args}))[0]
    assert r.code in {"bad_payload", "bad_address", "bad_amount"}
    assert g.state.get(b"gov/next") is None


def test_single_org_network_passes_on_proposal():
    g = Net()
    g.net = make_testnet(n_orgs=1, n_validators=1)
    g.chain = g.net.chain()
    pid = g.propose("mint", {"to": NEWKEY.address, "amount": 3})
    assert g.status(pid)["status"] == "executed"
    assert accounts.balance(g.state, NEWKEY.address) == 3


def test_mint_cannot_overflow_the_supply(g):
    room = accounts.MAX_AMOUNT - accounts.supply(g.state)
    pid, r = g.pass_("mint", {"to": NEWKEY.address, "amount": room})
    assert r.result["status"] == "executed"
    assert accounts.supply(g.state) == accounts.MAX_AMOUNT
    for _ in range(3):  # before the fix the third one crashed block building with EncodingError
        pid, r = g.pass_("mint", {"to": NEWKEY.address, "amount": accounts.MAX_AMOUNT})
        assert r.result["status"] == "failed" and g.status(pid)["reason"].startswith("supply_overflow")
    assert accounts.balance(g.state, NEWKEY.address) == room


def test_certificates_follow_the_validator_set_through_a_change(tmp_path):
    from ledger.store.leveldb import LevelDBStore

    net = make_testnet(n_orgs=4, n_validators=1)
    store = LevelDBStore(tmp_path / "db")
    g = Net()
    g.net, g.chain = net, net.chain(store)
    v0 = net.validators[0]
    extra = [Signer(sha256(b"val%d" % i)) for i in range(1, 4)]
    g.pool = [v0] + extra  # g.block() certifies with whichever of these decide each height
    for i, v in enumerate(extra):
        g.pass_("add_validator", {"org": f"org{i + 2}", "key": v.public_key,
                                  "p2p": f"http://10.0.0.{i}:1", "api": f"http://10.0.0.{i}:2"})
    h_change = g.state.get(b"validators_next")["height"]
    while g.chain.height + 1 < h_change:
        g.block()  # certified by the set deciding each height (sets grow as adds land)
    assert g.chain.validator_keys == [v0.public_key] + [v.public_key for v in extra]

    # height h_change is decided by four validators: v0's signature alone is no longer a quorum
    c = g.chain
    block, _ = c.build_block([], time_ms=c.next_heartbeat_ms(), view=0, proposer=extra[0].public_key,
                             last_cert=c.get_cert(c.height))
    result = c.validate_block(block)
    with pytest.raises(BlockInvalid):
        c.commit_block(block, net.certify(c, block), result)
    net.validators = [v0] + extra[:2]  # three of four
    c.commit_block(block, net.certify(c, block), result)
    assert c.height == h_change

    # the next block carries that certificate and is checked against the four-validator set
    store.close()
    store = LevelDBStore(tmp_path / "db")
    try:
        c = net.chain(store)
        assert c.head_validator_keys == [v0.public_key] + [v.public_key for v in extra]
        block, _ = c.build_block([], time_ms=c.next_heartbeat_ms(), view=0, proposer=v0.public_key,
                                 last_cert=c.get_cert(c.height))
        c.validate_block(block)
        weak = Certificate.build(h_change, 0, c.head.block_hash, dict([c.get_cert(c.height).signatures[0]]))
        forged = dataclasses.replace(block, last_cert=weak,
                                     header=dataclasses.replace(block.header, last_cert_hash=weak.hash))
        with pytest.raises(BlockInvalid) as exc:
            c.validate_block(forged)
        assert exc.value.code == "bad_certificate"
    finally:
        store.close()


@pytest.mark.parametrize("pid", [-1, 0, -(2**63), 2**64 - 1, "1", True, None])
def test_bad_vote_ids_are_receipts_not_crashes(g, pid):
    # before the fix, proposal -1 raised OverflowError out of execute_block: no block could be built
    r = g.block((g.admin("org2"), "vote", {"proposal": pid, "approve": True}))[0]
    assert r.code in {"bad_payload", "unknown_proposal"}
    assert accounts.next_nonce(g.state, g.admin("org2").address) == 1


def test_threshold_above_one_refused(g):
    # before the fix this passed, and from then on every proposal was rejected at once:
    # governance (including undoing this) was locked forever
    pid, r = g.pass_("set_param", {"name": "gov_threshold_num", "value": 4})
    assert r.result["status"] == "failed" and g.status(pid)["reason"].startswith("bad_threshold")
    assert g.chain.params["gov_threshold_num"] == 2
    g.pass_("set_param", {"name": "gov_threshold_num", "value": 3})
    assert g.chain.params["gov_threshold_num"] == 3  # unanimity (3/3) is allowed
    pid = g.propose("mint", {"to": NEWKEY.address, "amount": 1})
    for org in ("org2", "org3"):
        assert g.vote(pid, org).result["status"] == "open"
    assert g.vote(pid, "org4").result["status"] == "executed"


def test_last_admin_of_an_org_cannot_be_removed(g):
    # an admin-less org still counts in the 2/3 total but can never vote: two of them
    # (of four) would make every future proposal impossible
    pid, r = g.pass_("remove_member", {"address": g.admin("org4").address})
    assert r.result["status"] == "failed" and g.status(pid)["reason"].startswith("last_admin")
    assert accounts.member(g.state, g.admin("org4").address)["role"] == "admin"
    second = Signer(sha256(b"second admin 4"))
    g.pass_("add_member", {"org": "org4", "key": second.public_key, "role": "admin"})
    g.pass_("remove_member", {"address": g.admin("org4").address})
    assert accounts.member(g.state, g.admin("org4").address) is None
    assert accounts.members_of(g.state, "org4", "admin") == [(second.address, accounts.member(g.state, second.address))]


def test_votes_of_a_removed_org_no_longer_count(g):
    before = accounts.supply(g.state)
    pid = g.propose("mint", {"to": NEWKEY.address, "amount": 9})
    assert g.vote(pid, "org4").result["status"] == "open"  # org1 + org4 yes
    g.pass_("remove_org", {"org": "org4"})
    # three orgs remain; only org1 of them said yes. A "no" from org2 must not pass it
    # (with org4's stale yes it would: 2 * 3 >= 2 * 3)
    r = g.vote(pid, "org2", approve=False)
    assert r.result["status"] == "open"
    assert g.vote(pid, "org3", approve=False).result["status"] == "rejected"
    assert accounts.supply(g.state) == before
