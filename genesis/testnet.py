"""Test networks.

* `make_testnet`: deterministic keys, a small genesis and block certification, for
  tests, benchmarks and the simulator (in one process);
* `create_testnet`: the files of a network whose validators run on several hosts
  (`cxl testnet init --hosts h1,h2,…`): genesis, dev keys and a manifest.

Nothing in a running node imports this module.
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


# --- multi-host test networks: `cxl testnet init --hosts h1,h2,…` (like `cometbft testnet --hostname`) ---

DEFAULT_P2P_PORT = 26601  # node.config defaults: a node on its own host needs no port flags
DEFAULT_API_PORT = 26701


class TestnetError(Exception):
    __test__ = False  # not a pytest class

    code = "bad_testnet"


def host_endpoints(hosts: list[str], p2p_port: int = DEFAULT_P2P_PORT,
                   api_port: int = DEFAULT_API_PORT) -> list[tuple[str, str]]:
    """(p2p URL, api URL) of validator K at hosts[K]: the given ports, one higher for each
    earlier occurrence of the same host (so several validators may share a machine)."""
    seen: dict[str, int] = {}
    out = []
    for host in hosts:
        n = seen.get(host, 0)
        seen[host] = n + 1
        out.append((f"http://{host}:{p2p_port + n}", f"http://{host}:{api_port + n}"))
    return out


def parse_hosts(text: str) -> list[str]:
    """`h1,h2,…` as a list; each an IPv4 address or a host name (no scheme, port or spaces)."""
    import re

    hosts = [h.strip() for h in text.split(",")]
    if not hosts or any(not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}", h) for h in hosts):
        raise TestnetError(f"--hosts: give host names or addresses separated by commas, e.g. 10.0.0.1,10.0.0.2 "
                           f"(got {text!r})")
    if len(hosts) > 99:
        raise TestnetError("--hosts: at most 99 validators")
    return hosts


def create_testnet(directory, hosts: list[str], *, chain_id: str = "cxl-testnet", p2p_port: int = DEFAULT_P2P_PORT,
                   api_port: int = DEFAULT_API_PORT, balance: int = 10**12, genesis_time_ms: int | None = None,
                   params: dict | None = None, overwrite: bool = False) -> dict:
    """Keys and genesis of a network with validator K (1-based) at hosts[K-1]: one organisation
    per validator, dev keys under DIR/keys, DIR/genesis.json; returns the manifest (its
    ``nodes[].home`` are for the caller to create, with `node.config.init_home`)."""
    import time
    from pathlib import Path

    from ledger.keystore import write_key
    from genesis.schema import save

    if not hosts:
        raise TestnetError("--hosts: give at least one host")
    if p2p_port + len(hosts) > 65536 or api_port + len(hosts) > 65536:
        raise TestnetError("ports: leave room below 65536 for one port per validator on a host")
    root = Path(directory).resolve()
    keys_dir = root / "keys"
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def new_key(name: str) -> dict:
        signer = Signer.generate()
        path = keys_dir / f"{name}.json"
        write_key(path, signer, name=name, overwrite=overwrite)  # an unencrypted dev key, marked as such
        return {"path": str(path), "address": signer.address, "public_key": signer.public_key.hex()}

    orgs, validators, balances, m_nodes, m_orgs = [], [], [], [], []
    for k, (host, (p2p, api)) in enumerate(zip(hosts, host_endpoints(hosts, p2p_port, api_port)), start=1):
        oid = f"org{k}"
        keys = {role: new_key(f"{oid}-{role}") for role in ("admin", "operator", "auditor")}
        orgs.append({"id": oid, "name": f"Organisation {k}",
                     "members": [{"key": info["public_key"], "role": role} for role, info in keys.items()]})
        if balance:
            balances += [{"address": keys[r]["address"], "amount": balance} for r in ("admin", "operator")]
        node_key = new_key(f"node{k}")
        validators.append({"org": oid, "key": node_key["public_key"], "p2p": p2p, "api": api})
        m_orgs.append({"id": oid, "keys": keys})
        m_nodes.append({"name": f"node{k}", "org": oid, "host": host, "p2p": p2p, "api": api,
                        "home": str(root / f"node{k}"), "node_key": node_key})
    doc = validate({
        "chain_id": chain_id,
        "genesis_time_ms": genesis_time_ms if genesis_time_ms is not None else time.time_ns() // 1_000_000,
        "params": dict(params or {}), "orgs": orgs, "validators": validators, "balances": balances,
    })
    save(doc, root / "genesis.json")
    return {"kind": "cxl-testnet", "version": 1, "chain_id": chain_id, "genesis": str(root / "genesis.json"),
            "genesis_hash": genesis_hash(doc).hex(),
            "dev_keys_warning": "every key under keys/ is an UNENCRYPTED DEV KEY: for test networks only",
            "nodes": m_nodes, "orgs": m_orgs}
