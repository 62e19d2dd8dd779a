"""Build certified test chains: transfers and governance validator changes, on any store.

For tests and scripts/bench_replay.py only; nothing in a node or in replay imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ledger.block import Block, Certificate, commit_signing_bytes
from ledger.chain import Chain
from ledger.crypto import Signer
from ledger.encoding import sha256
from ledger.tx import SignedTx, make_tx

from genesis.testnet import TestNet, make_testnet

GENESIS_TIME = 1_700_000_000_000


@dataclass
class BuiltChain:
    net: TestNet
    chain: Chain
    signers: dict[bytes, Signer]                    # every validator key ever used -> its signer
    tx_hashes: list[bytes] = field(default_factory=list)
    change_heights: list[int] = field(default_factory=list)  # first heights decided by a new set
    nonces: dict[str, int] = field(default_factory=dict)

    def certify(self, block: Block, view: int = 0, signers: list[Signer] | None = None) -> Certificate:
        """Sign the commit with every key of the set deciding this block (or `signers`)."""
        keys = self.chain.validator_keys if signers is None else [s.public_key for s in signers]
        msg = commit_signing_bytes(self.chain.chain_id, view, block.height, block.hash)
        return Certificate.build(block.height, view, block.hash,
                                 {k: self.signers[k].sign(msg) if k in self.signers else b"" for k in keys})

    def tx(self, signer: Signer, kind: str, payload: dict) -> SignedTx:
        nonce = self.nonces.get(signer.address, 0)
        self.nonces[signer.address] = nonce + 1
        return make_tx(signer, self.chain.chain_id, nonce, kind, payload)

    def add_block(self, txs: list[SignedTx], *, verified=frozenset()) -> Block:
        chain = self.chain
        h = chain.height + 1
        keys = chain.validator_keys
        block, result = chain.build_block(
            txs, time_ms=GENESIS_TIME + 1000 * h, view=0, proposer=keys[h % len(keys)],
            last_cert=chain.get_cert(h - 1) if h > 1 else None, verified=verified,
        )
        if result.excluded:
            raise AssertionError(f"block {h}: transactions dropped: {[(c, m) for _, c, m in result.excluded]}")
        before = chain.validator_keys
        chain.commit_block(block, self.certify(block), result)
        if chain.validator_keys != before:
            self.change_heights.append(h + 1)
        self.tx_hashes.extend(t.hash for t in result.txs)
        return block


def validator_signer(chain_id: str, i: int) -> Signer:
    return Signer(sha256(f"{chain_id}/validator/{i}".encode()))


def governance_block(bc: BuiltChain, action: str, args: dict) -> list[SignedTx]:
    """A proposal by org1's admin and the votes of org2 and org3: passes at once (3 of 4 orgs)."""
    admins = bc.net.admins
    pid = bc.chain.state().get(b"gov/next", 1)
    txs = [bc.tx(admins["org1"], "propose", {"action": action, "args": args})]
    txs += [bc.tx(admins[o], "vote", {"proposal": pid, "approve": True}) for o in ("org2", "org3")]
    return txs


def build_test_chain(store=None, *, blocks: int = 30, chain_id: str = "cxl-audit", balance: int = 10**12) -> BuiltChain:
    """`blocks` blocks of transfers; validator 4 is added at block 5, validator 0 removed at block 15.

    With validator_delay 2 the new sets decide from heights 7 and 17.
    """
    net = make_testnet(n_orgs=4, n_validators=4, chain_id=chain_id, balance=balance)
    chain = net.chain(store)
    signers = {s.public_key: s for s in net.validators}
    extra = validator_signer(chain_id, 4)
    signers[extra.public_key] = extra
    bc = BuiltChain(net, chain, signers)
    ops = [net.operators[o] for o in sorted(net.operators)]
    for h in range(1, blocks + 1):
        txs = []
        if h == 5:
            txs += governance_block(bc, "add_validator", {"org": "org2", "key": extra.public_key.hex(),
                                                          "p2p": "http://127.0.0.1:27004", "api": "http://127.0.0.1:28004"})
        if h == 15:
            txs += governance_block(bc, "remove_validator", {"key": net.validators[0].public_key.hex()})
        for i in range(3):
            sender, to = ops[(h + i) % 4], ops[(h + i + 1) % 4]
            txs.append(bc.tx(sender, "transfer", {"to": to.address, "amount": 1000 + h * 10 + i}))
        bc.add_block(txs)
    return bc
