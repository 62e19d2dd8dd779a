"""A local development network on one machine: keys, genesis and a manifest.

`create_localnet(directory, n)` writes::

    DIR/genesis.json              one organisation per validator (org1 … orgN)
    DIR/keys/orgK-admin.json      funded admin key          } unencrypted dev keys
    DIR/keys/orgK-operator.json   funded operator key       } (each file says so):
    DIR/keys/orgK-auditor.json    auditor key (unfunded)    } never use them for
    DIR/keys/nodeK.json           validator node key        } anything real

and returns the manifest (see `manifest`), which the caller saves as ``DIR/localnet.json``
once it has created the node homes ``DIR/nodeK`` (node homes belong to `node.config`,
which this package may not import). Node K (1-based) listens on P2P port
``base_port + K`` and API port ``base_port + 100 + K``: with the default base 26600 the
first node is at 26601/26701, the `node.config.NodeConfig` defaults and the CLI's
default ``--node``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ledger.crypto import Signer
from ledger.keystore import write_key

from genesis.schema import genesis_hash, save, validate

MANIFEST_FILE = "localnet.json"
DEFAULT_CHAIN_ID = "cxl-local"
DEFAULT_BASE_PORT = 26600
API_PORT_OFFSET = 100
DEFAULT_BALANCE = 10**12  # per funded key, in minor units
ROLES = ("admin", "operator", "auditor")
FUNDED_ROLES = ("admin", "operator")
MAX_VALIDATORS = 99  # keeps P2P ports clear of API ports


class LocalnetError(Exception):
    pass


def ports(k: int, base_port: int = DEFAULT_BASE_PORT) -> tuple[int, int]:
    """(p2p, api) ports of node k (1-based)."""
    return base_port + k, base_port + API_PORT_OFFSET + k


def create_localnet(directory: str | Path, n: int, *, chain_id: str = DEFAULT_CHAIN_ID,
                    base_port: int = DEFAULT_BASE_PORT, host: str = "127.0.0.1",
                    balance: int = DEFAULT_BALANCE, genesis_time_ms: int | None = None,
                    params: dict | None = None, overwrite: bool = False) -> dict:
    """Write keys and genesis for an n-validator localnet; return its manifest (not yet saved)."""
    if not 1 <= n <= MAX_VALIDATORS:
        raise LocalnetError(f"--validators must be between 1 and {MAX_VALIDATORS}")
    if not 1024 <= base_port <= 65535 - API_PORT_OFFSET - n:
        raise LocalnetError(f"--base-port must leave room for {n} P2P and API ports below 65536 (and be >= 1024)")
    root = Path(directory).resolve()
    keys_dir = root / "keys"
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def new_key(name: str) -> tuple[Signer, dict]:
        signer = Signer.generate()
        path = keys_dir / f"{name}.json"
        write_key(path, signer, name=name, overwrite=overwrite)  # no passphrase: a marked dev key
        return signer, {"path": str(path), "address": signer.address, "public_key": signer.public_key.hex()}

    orgs, validators, balances = [], [], []
    m_orgs, m_nodes = [], []
    for k in range(1, n + 1):
        oid = f"org{k}"
        keys, members = {}, []
        for role in ROLES:
            signer, info = new_key(f"{oid}-{role}")
            keys[role] = info
            members.append({"key": info["public_key"], "role": role})
            if role in FUNDED_ROLES and balance:
                balances.append({"address": signer.address, "amount": balance})
        orgs.append({"id": oid, "name": f"Organisation {k}", "members": members})
        m_orgs.append({"id": oid, "name": f"Organisation {k}", "keys": keys})

        _, node_key = new_key(f"node{k}")
        p2p_port, api_port = ports(k, base_port)
        p2p, api = f"http://{host}:{p2p_port}", f"http://{host}:{api_port}"
        validators.append({"org": oid, "key": node_key["public_key"], "p2p": p2p, "api": api})
        m_nodes.append({"name": f"node{k}", "org": oid, "api": api, "p2p": p2p, "api_port": api_port,
                        "p2p_port": p2p_port, "home": str(root / f"node{k}"), "node_key": node_key})

    doc = validate({
        "chain_id": chain_id,
        "genesis_time_ms": genesis_time_ms if genesis_time_ms is not None else time.time_ns() // 1_000_000,
        "params": dict(params or {}), "orgs": orgs, "validators": validators, "balances": balances,
    })
    genesis_path = root / "genesis.json"
    save(doc, genesis_path)
    return {
        "kind": "cxl-localnet",
        "version": 1,
        "chain_id": chain_id,
        "genesis": str(genesis_path),
        "genesis_hash": genesis_hash(doc).hex(),
        "base_port": base_port,
        "dev_keys_warning": "every key under keys/ is an UNENCRYPTED DEV KEY: for this local network only",
        "nodes": m_nodes,
        "orgs": m_orgs,
    }


def save_manifest(directory: str | Path, manifest: dict) -> Path:
    path = Path(directory) / MANIFEST_FILE
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def load_manifest(directory: str | Path) -> dict:
    path = Path(directory) / MANIFEST_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise LocalnetError(
            f"{path} does not exist: create the network with `cxl localnet init --validators N --dir {directory}`"
        ) from None
    except (OSError, ValueError) as exc:
        raise LocalnetError(f"cannot read {path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind") != "cxl-localnet" or not isinstance(doc.get("nodes"), list):
        raise LocalnetError(f"{path} is not a localnet manifest")
    return doc
