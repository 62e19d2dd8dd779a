"""Governance proposals that carry several actions, and the old single-action form.

The single-action payload `{action, args}` of every existing chain must keep executing
byte for byte as before (replay compares every state and results root), so the first
test pins the roots of a fixed history of old-form proposals."""

from __future__ import annotations

import pytest

from ledger import accounts, governance
from ledger.crypto import Signer
from ledger.encoding import sha256

from tests.unit.test_governance import NEWKEY, Net

KEY_A = Signer(sha256(b"multi/a"))
KEY_B = Signer(sha256(b"multi/b"))
NODE_C = Signer(sha256(b"multi/node-c"))


def old_form_history(g: Net) -> list[bytes]:
    """Old-form proposals: executed, failed at execution, rejected, refused payloads."""
    roots = []

    def step(*calls):
        g.block(*calls)
        roots.append(g.chain.head.state_root)
        roots.append(g.chain.get_block(g.chain.height).header.results_root)

    a1, a2, a3, a4 = (g.admin(o) for o in ("org1", "org2", "org3", "org4"))
    step((a1, "propose", {"action": "mint", "args": {"to": NEWKEY.address, "amount": 9}}))
    step((a2, "vote", {"proposal": 1, "approve": True}), (a3, "vote", {"proposal": 1, "approve": True}))
    step((a1, "propose", {"action": "add_member", "args": {"org": "org2", "key": a3.public_key.hex(),
                                                            "role": "operator"}, "expires_in": 50}))
    step((a2, "vote", {"proposal": 2, "approve": True}), (a4, "vote", {"proposal": 2, "approve": True}))
    step((a1, "propose", {"action": "set_param", "args": {"name": "max_block_txs", "value": 500}}),
         (a2, "vote", {"proposal": 3, "approve": False}), (a3, "vote", {"proposal": 3, "approve": False}))
    step((a1, "propose", {"action": "nope", "args": {}}), (a1, "propose", {"args": {}}),
         (a1, "propose", {"action": "add_org", "args": {"org": "Bad!", "name": "x", "admin": "00"}}),
         (a2, "vote", {"proposal": 99, "approve": True}))
    step((a1, "propose", {"action": "add_org", "args": {"org": "neworg", "name": "New",
                                                         "admin": KEY_A.public_key.hex()}}),
         (a2, "vote", {"proposal": 4, "approve": True}), (a3, "vote", {"proposal": 4, "approve": True}))
    return roots


# Recorded with the code before multi-action proposals existed (commit 2e76811).
OLD_FORM_ROOTS: list[str] = [  # state root, results root, per block
    "5f24f4fcb86c7ec596c4c5757015d10a624a8ee75a51daae5c9af5150a8f1607",
    "8ed647de2e0bc925cc7bca328b92848c38da5fc542263835618ab8d5e34c52cc",
    "9271ceab6d616fb80e02f1c114765afad12489faffba2298e5a54b6cc01c542d",
    "3ef02a1dbe09eb57cf2b185a27de34d9030eade6ab9d44e57d0d21594e5bf591",
    "9a2f5c77b551eec504f80eac681c5f9f82afa893815febf8756a721c58b4a6ed",
    "6306d0bfb6c3df8efd9b07d4947bea397d60258a1f9de5eed43188766f6a55b0",
    "404880774eaca8bd4a0b644104ace231c2a5a070c396553a89b079a4a309b5a5",
    "5bd19f74c3cc4246a56a4143da6c3439bc7c89183e965832936a4dcc3eea79cc",
    "1c2b99b6471d36032d1fb9a9894bbcb4a703cbfe3f887fc1a4bb7c42a1460206",
    "855ad85d58dfa767d6862aa6ce373578f1bf39f06f42a14d4827c994ca2f7435",
    "f4723e7ce05bcb0e0313533b6d3b21c171faafea6e7c598a0532f6bdc8c066d6",
    "1edf14310073a0a67a31420b47230c0efbbae560a28f229499365fc89189fa0a",
    "a59db995e9486641dfce144000d65c6db010067851a547504f1398325153d455",
    "63b36db9f26560950eaf6e42be18ced14197ac864e98b7de46fcabd11cb70606",
]


def test_old_single_action_proposals_replay_byte_for_byte():
    g = Net()
    roots = [r.hex() for r in old_form_history(g)]
    assert [g.status(i)["status"] for i in (1, 2, 3, 4)] == ["executed", "failed", "rejected", "executed"]
    assert "actions" not in g.status(1)  # the stored map keeps its old shape
    assert roots == OLD_FORM_ROOTS
