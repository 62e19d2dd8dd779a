"""Deterministic test networks for tests, benchmarks and the simulator: a small genesis with funded keys, and block certification.

Used by tests, benchmarks and the simulator; nothing in a running node imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.block import Block, Certificate, commit_signing_bytes
from ledger.chain import Chain
from ledger.crypto import Signer
from ledger.encoding import sha256
from ledger.store.memory import MemoryStore

from genesis.schema import genesis_hash, validate


@dataclass
class TestNet:
    doc: dict
    genesis_hash: bytes
    validators: list[Signer]
    admins: dict[str, Signer]     # org id -> admin key
    operators: dict[str, Signer]  # org id -> operator key
    auditors: dict[str, Signer]   # org id -> auditor key

    def chain(self, store=None) -> Chain:
        return Chain(store if store is not None else MemoryStore(), self.doc, self.genesis_hash)

    def certify(self, chain: Chain, block: Block, view: int = 0) -> Certificate:
        votes = {
            v.public_key: v.sign(commit_signing_bytes(chain.chain_id, view, block.height, block.hash))
            for v in self.validators
        }
        return Certificate.build(block.height, view, block.hash, votes)


def _seeded(label: str) -> Signer:
    return Signer(sha256(label.encode()))


def make_testnet(n_orgs: int = 4, n_validators: int = 1, balance: int = 10**12, chain_id: str = "cxl-test",
                 params: dict | None = None) -> TestNet:
    """Deterministic keys (seeded from labels) so failures reproduce."""
    orgs, admins, operators, auditors, balances = [], {}, {}, {}, []
    for i in range(n_orgs):
        oid = f"org{i + 1}"
        admins[oid], operators[oid], auditors[oid] = (_seeded(f"{chain_id}/{oid}/{r}") for r in ("admin", "op", "aud"))
        orgs.append({"id": oid, "name": f"Organisation {i + 1}", "members": [
            {"key": admins[oid].public_key.hex(), "role": "admin"},
            {"key": operators[oid].public_key.hex(), "role": "operator"},
            {"key": auditors[oid].public_key.hex(), "role": "auditor"},
        ]})
        balances += [{"address": admins[oid].address, "amount": balance},
                     {"address": operators[oid].address, "amount": balance}]
    validators = [_seeded(f"{chain_id}/validator/{i}") for i in range(n_validators)]
    doc = validate({
        "chain_id": chain_id, "genesis_time_ms": 1_700_000_000_000, "params": params or {},
        "orgs": orgs,
        "validators": [{"org": orgs[i % n_orgs]["id"], "key": validators[i].public_key.hex(),
                        "p2p": f"http://127.0.0.1:{27000 + i}", "api": f"http://127.0.0.1:{28000 + i}"}
                       for i in range(n_validators)],
        "balances": balances,
    })
    return TestNet(doc, genesis_hash(doc), validators, admins, operators, auditors)
