"""The CLI's light client: state reads checked against the genesis file, not the node.

With a genesis file (``--genesis FILE`` on `cxl` or on the command, else ``$CXL_GENESIS``,
else the one remembered by `cxl light trust FILE` in ``$CXL_HOME/genesis.json``, default
``~/.cxl``), a state read (`cxl account show`, `cxl listing show` …) asks the node for
``?prove=1``; follows the certified validator-set changes from the genesis set (or from the
last set it verified, cached in ``$CXL_HOME/light/<genesis hash>.json``) up to the proof's
height (GET /v1/light/validator_changes); checks the header's certificate against the set
deciding that height and every Merkle proof against its state root
(`ledger.lightclient`); then checks that the fields it prints are the proven values. It
prints ``verified at height H`` (``--json``: a ``verified`` object). Anything that does not
check is an error naming what failed (exit 1); nothing unverified is cached.

``--trust-node`` skips all of it and says so; with no genesis file at all the answer is
shown with a warning on stderr. See docs/cli.md "Verified reads".
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import click

from cli.client import NodeClient, NodeError
from node.views import jsonable  # the node's JSON form of stored values: what it answers with
from ledger.encoding import decode
from ledger.errors import EncodingError
from ledger.lightclient import (LightClientError, TrustedSet, follow_change, follow_page, genesis_set, genesis_state_root,
                                set_deciding, verify_state_proof, verify_tx_proof)

GENESIS_ENV = "CXL_GENESIS"
HOME_ENV = "CXL_HOME"
CACHE_FORMAT = "cxl-light/1"
PAGE = 100
_GENESIS_META, _TRUST_META = "cxl.light.genesis", "cxl.light.trust_node"
UNVERIFIED_HINT = ("not verified: pass --genesis FILE, set CXL_GENESIS, or remember one with "
                   "`cxl light trust FILE`; or pass --trust-node to accept the node's word")


def cxl_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".cxl")


def remembered_genesis() -> Path:
    return cxl_home() / "genesis.json"


# -- options ------------------------------------------------------------------------------------

def _remember(meta_key: str) -> Callable:
    def callback(ctx: click.Context, param, value):
        if value:  # an option not given leaves what the root group (or an earlier level) set
            ctx.meta[meta_key] = value
        return value

    return callback


def trust_node_option(f: Callable) -> Callable:
    return click.option("--trust-node", is_flag=True, expose_value=False, callback=_remember(_TRUST_META),
                        help="Do not verify the answer: accept what the node says (said on stderr).")(f)


def use_genesis(path: str | None) -> None:
    """A command's own genesis option (e.g. `cxl tx show --genesis`) also picks the light client's."""
    if path:
        click.get_current_context().meta[_GENESIS_META] = path


def light_options(f: Callable) -> Callable:
    """``--genesis FILE`` and ``--trust-node`` on a command (also accepted on `cxl` itself)."""
    f = trust_node_option(f)
    return click.option("--genesis", type=click.Path(dir_okay=False), expose_value=False,
                        callback=_remember(_GENESIS_META), metavar="FILE",
                        help=f"The chain's genesis file: verify the answer against it [default: ${GENESIS_ENV}, "
                             "else the file remembered by `cxl light trust`].")(f)


# -- the light client ---------------------------------------------------------------------------

class VerificationFailed(click.ClickException):
    """A node's answer did not verify: exit 1 with the LightClientError code and what to do."""

    exit_code = 1

    def __init__(self, exc: LightClientError, url: str):
        super().__init__(f"verification failed [{exc.code}]: {exc.message}. The node at {url} sent an answer "
                         "that its chain's certificates do not back: it is faulty or lying; ask another node "
                         "(--node URL), or pass --trust-node to accept its word")
        self.code = exc.code


@dataclass
class LightClient:
    genesis_path: str
    doc: dict
    genesis_hash: bytes
    sets: list[TrustedSet] = field(default_factory=list)
    _root: bytes | None = None

    @property
    def chain_id(self) -> str:
        return self.doc["chain_id"]

    @property
    def cache_path(self) -> Path:
        return cxl_home() / "light" / f"{self.genesis_hash.hex()}.json"

    @classmethod
    def open(cls, genesis_path: str) -> "LightClient":
        from genesis.schema import load

        doc, ghash = load(genesis_path)
        lc = cls(str(genesis_path), doc, ghash, [genesis_set(doc)])
        lc._load_cache()
        return lc

    def genesis_root(self) -> bytes:
        if self._root is None:
            self._root = genesis_state_root(self.doc)
        return self._root

    # cache: only sets this client verified, oldest first; a broken file is ignored (and rewritten)
    def _load_cache(self) -> None:
        try:
            data = json.loads(self.cache_path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            click.echo(f"warning: ignoring the light-client cache {self.cache_path}: {exc}", err=True)
            return
        try:
            if data.get("format") != CACHE_FORMAT or data.get("genesis_hash") != self.genesis_hash.hex():
                raise LightClientError("malformed", "another format or genesis")
            sets = [TrustedSet.from_json(s) for s in data["sets"]]
            if any(b.after <= a.after for a, b in zip([self.sets[0], *sets], sets)):
                raise LightClientError("malformed", "sets out of order")
        except (LightClientError, KeyError, TypeError, AttributeError) as exc:
            click.echo(f"warning: ignoring the light-client cache {self.cache_path}: {exc}", err=True)
            return
        self.sets.extend(sets)

    def _save_cache(self) -> None:
        path = self.cache_path
        data = {"format": CACHE_FORMAT, "chain_id": self.chain_id, "genesis_hash": self.genesis_hash.hex(),
                "genesis_file": os.path.abspath(self.genesis_path),
                "sets": [s.to_json() for s in self.sets[1:]]}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".light-")
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh, indent=1)
            os.replace(tmp, path)
        except OSError as exc:  # a read-only home only costs re-following next time
            click.echo(f"warning: cannot write the light-client cache {path}: {exc.strerror}", err=True)

    def follow(self, client: NodeClient) -> None:
        """Follow the node's validator-set changes after the last verified set (each proven by
        its certified block, docs/protocol.md §6.2). A node without the endpoint is not an
        error here: a proof from a height the known sets do not decide then fails on its own."""
        known = len(self.sets)
        try:
            more = True
            while more:
                try:
                    page = client.get("/v1/light/validator_changes", {"from": self.sets[-1].after, "limit": PAGE})
                except NodeError as exc:
                    if exc.status == 404 and exc.code in ("not_found", "http_404"):
                        return
                    raise
                more = follow_page(self.chain_id, self.sets, page)
        finally:
            if len(self.sets) > known:
                self._save_cache()

    def validators_at(self, client: NodeClient, height: int) -> list[bytes]:
        self.follow(client)
        return set_deciding(self.sets, height).keys


def from_context(ctx: click.Context | None = None) -> LightClient | None | str:
    """The light client the options ask for: a LightClient, "trust" (--trust-node), or None
    (no genesis known)."""
    ctx = ctx or click.get_current_context()
    if ctx.meta.get(_TRUST_META):
        return "trust"
    path = ctx.meta.get(_GENESIS_META) or os.environ.get(GENESIS_ENV)
    if not path and remembered_genesis().is_file():
        path = str(remembered_genesis())
    if not path:
        return None
    return LightClient.open(path)


# -- checking what the node says against what it proved ---------------------------------------



def _mismatch(what: str, field_name: str) -> LightClientError:
    return LightClientError("answer", f"the {what}'s {field_name!r} the node shows is not the proven value")


def _stored(entries: dict, key: bytes, what: str):
    if key not in entries:
        raise LightClientError("answer", f"the proof does not cover the {what} asked for (key {key!r})")
    raw = entries[key]
    if raw is None:
        return None
    try:
        return decode(raw)
    except EncodingError as exc:
        raise LightClientError("malformed", f"the proven {what} does not decode: {exc}") from None


def _same_fields(doc: dict, stored: dict, what: str) -> set[str]:
    """Every stored field is shown as stored; returns the field names checked."""
    for k, v in stored.items():
        if k not in doc or doc[k] != jsonable(v):
            raise _mismatch(what, k)
    return set(stored)


def _bind_account(doc: dict, entries: dict, address: str) -> set[str]:
    from ledger import accounts

    balance = _stored(entries, accounts.bal_key(address), "balance")
    nonce = _stored(entries, accounts.nonce_key(address), "nonce")
    member = _stored(entries, accounts.member_key(address), "membership")
    for name, proven in (("address", address), ("balance", balance or 0), ("nonce", nonce or 0),
                         ("member", None if member is None else jsonable(member))):
        if doc.get(name) != proven:
            raise _mismatch("account", name)
    return {"address", "balance", "nonce", "member"}


def _bind_entry(key_fn, what: str, derived: dict[str, Callable] | None = None):
    def bind(doc: dict, entries: dict, ident) -> set[str]:
        stored = _stored(entries, key_fn(ident), what)
        if stored is None:
            raise LightClientError("answer", f"the proof says {what} {ident} does not exist, the node shows one")
        checked = _same_fields(doc, stored, what)
        for name, fn in (derived or {}).items():
            if doc.get(name) != fn(stored):
                raise _mismatch(what, name)
            checked.add(name)
        return checked

    return bind


def _bind_proposal(doc: dict, entries: dict, pid: int) -> set[str]:
    from ledger import governance

    stored = _stored(entries, governance.proposal_key(pid), "proposal")
    if stored is None:
        raise LightClientError("answer", f"the proof says proposal {pid} does not exist, the node shows one")
    checks = {"id": stored["id"], "proposer": jsonable(stored["proposer"]),
              "created_height": stored["created_height"], "expires_height": stored["expires_height"],
              "decided_height": stored.get("decided_height"),
              "actions": jsonable(governance.proposal_actions(stored))}
    for k in ("reason", "error_code", "failed_action"):
        if k in stored:
            checks[k] = jsonable(stored[k])
    for name, proven in checks.items():
        if doc.get(name) != proven:
            raise _mismatch("proposal", name)
    # an open proposal past its last block is shown as expired (ledger/gov_queries.py)
    status = doc.get("status")
    expired = stored["status"] == "open" and doc.get("height", 0) >= stored["expires_height"]
    if status != ("expired" if expired else stored["status"]):
        raise _mismatch("proposal", "status")
    return set(checks) | {"status"}


def _bind_org(doc: dict, entries: dict, org_id: str) -> set[str]:
    from ledger import accounts

    stored = _stored(entries, accounts.org_key(org_id), "organisation")
    if stored is None:
        raise LightClientError("answer", f"the proof says organisation {org_id} does not exist, the node shows one")
    return _same_fields(doc, stored, "organisation")


def _bind_params(doc: dict, entries: dict, _ident) -> set[str]:
    from ledger.accounts import PARAMS_KEY
    from ledger.genesis_state import DEFAULT_PARAMS

    stored = _stored(entries, PARAMS_KEY, "parameters") or {}
    shown = doc.get("params")
    if not isinstance(shown, dict) or set(shown) != set(DEFAULT_PARAMS) | set(stored):
        raise _mismatch("parameters", "params")
    for name, p in shown.items():
        if not isinstance(p, dict) or p.get("value") != stored.get(name, DEFAULT_PARAMS.get(name)):
            raise LightClientError("answer", f"parameter {name!r}: the value the node shows is not the proven one")
    return {"params"}


def _market_binders() -> dict:
    from ledger.market.common import attestation_key, lease_key, listing_key

    return {
        "listing": _bind_entry(listing_key, "listing", {"available_units": lambda s: s["units"] - s["reserved"]}),
        "lease": _bind_entry(lease_key, "lease"),
        "attestation": _bind_entry(attestation_key, "attestation"),
    }


def binder(kind: str):
    if kind in ("listing", "lease", "attestation"):
        return _market_binders()[kind]
    return {"account": _bind_account, "proposal": _bind_proposal, "org": _bind_org, "params": _bind_params}[kind]


# -- the read a command makes --------------------------------------------------------------------

@dataclass
class Verified:
    height: int
    block_hash: str | None  # None at height 0 (the genesis state: checked against the genesis file)
    state_root: str
    not_proven: list[str]

    def to_json(self) -> dict:
        return {"height": self.height, "block_hash": self.block_hash, "state_root": self.state_root,
                "not_proven": self.not_proven}

    def line(self) -> str:
        where = f"block {self.block_hash[:16]}…" if self.block_hash else "the genesis state"
        out = f"verified at height {self.height} ({where})"
        if self.not_proven:
            out += f"; not covered by the proof (derived by the node): {', '.join(self.not_proven)}"
        return out


def _block_hash(proof: dict) -> str | None:
    import base64

    from ledger.block import Header

    if not proof.get("header_raw"):
        return None
    return Header.from_wire(decode(base64.b64decode(proof["header_raw"]))).hash.hex()


def verified_get(client: NodeClient, path: str, kind: str, ident=None, *, fetch: Callable | None = None,
                 params: dict | None = None) -> tuple[dict, Verified | None]:
    """GET `path` and, when a genesis is known, verify it as `kind` (account, listing, lease,
    attestation, proposal, org, params) for `ident` (address, id …). Returns (the node's
    answer without its proof, Verified or None). `fetch(client, path, params)` replaces a
    plain `client.get` (commands that turn 404s into their own messages)."""
    fetch = fetch or (lambda c, p, q: c.get(p, q))
    light = from_context()
    if not isinstance(light, LightClient):
        click.echo("note: not verified (--trust-node)" if light == "trust" else f"warning: {UNVERIFIED_HINT}",
                   err=True)
        return fetch(client, path, params), None
    doc = fetch(client, path, {**(params or {}), "prove": "1"})
    try:
        proof = doc.pop("proof", None)
        if not isinstance(proof, dict):
            raise LightClientError("malformed", "the node sent no proof (?prove=1): it may be an older version")
        height = proof.get("height")
        if not isinstance(height, int) or isinstance(height, bool) or height < 0:
            raise LightClientError("malformed", "proof.height is not a height")
        keys = light.validators_at(client, height) if height > 0 else []
        entries = verify_state_proof(proof, chain_id=light.chain_id, validators=keys,
                                     genesis_state_root=light.genesis_root())
        if "height" in doc and doc["height"] != height:
            raise LightClientError("answer", f"the answer says height {doc['height']}, its proof is of {height}")
        checked = binder(kind)(doc, entries, ident) | {"height"}
        verified = Verified(height, _block_hash(proof), proof["state_root"],
                            sorted(k for k in doc if k not in checked))
    except LightClientError as exc:
        raise VerificationFailed(exc, client.url) from None
    return doc, verified


def verify_commit(client: NodeClient, record: dict) -> Verified | None:
    """Verify a committed transaction (GET /v1/txs/{hash}/proof) when a genesis is known:
    its inclusion and receipt against a header certified by the set deciding its height.
    None when no genesis is known or --trust-node was given (tx commands do not warn)."""
    light = from_context()
    if not isinstance(light, LightClient):
        return None
    tx_hash = record["hash"]
    proof = client.tx_proof(tx_hash)
    try:
        height = proof.get("height")
        if not isinstance(height, int) or isinstance(height, bool) or height < 1:
            raise LightClientError("malformed", "the transaction proof has no block height")
        keys = light.validators_at(client, height)
        out = verify_tx_proof(proof, chain_id=light.chain_id, validators=keys, tx_hash=bytes.fromhex(tx_hash))
        from audit.receipt import decode_result

        receipt = decode_result(out["receipt"])
        shown = record.get("receipt") or {}
        if shown.get("code") != receipt.code or record.get("height") != height \
                or record.get("block_hash") != out["block_hash"].hex():
            raise LightClientError("answer", "where the node says the transaction landed, or its result code, "
                                             "is not what the certified block holds")
    except LightClientError as exc:
        raise VerificationFailed(exc, client.url) from None
    except (EncodingError, ValueError) as exc:
        raise VerificationFailed(LightClientError("malformed", f"the proven receipt does not decode: {exc}"),
                                 client.url) from None
    header_root = proof.get("header", {}).get("state_root", "") if isinstance(proof.get("header"), dict) else ""
    return Verified(height, out["block_hash"].hex(), header_root, [])


def emit(verified: Verified | None) -> None:
    """The human line after a verified read (stdout)."""
    if verified is not None:
        click.echo(verified.line())


def json_doc(doc: dict, verified: Verified | None) -> dict:
    """The node's answer, plus `verified` when it was (unverified answers are printed unchanged)."""
    return doc if verified is None else {**doc, "verified": verified.to_json()}


def list_note(what: str, how: str) -> None:
    """What list commands say: their answers are not proven, and where a proven read is."""
    light = from_context()
    if light == "trust":
        click.echo("note: not verified (--trust-node)", err=True)
    elif isinstance(light, LightClient):
        click.echo(f"note: {what} are not verified (the node proves single entries: {how})", err=True)
    else:
        click.echo(f"warning: {UNVERIFIED_HINT}", err=True)


# -- `cxl light …` ---------------------------------------------------------------------------------

@click.group("light")
def light_group() -> None:
    """The genesis file reads are verified against, and the validator sets followed from it."""


@light_group.command("trust")
@click.argument("genesis_file", type=click.Path(exists=True, dir_okay=False), metavar="GENESIS")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def light_trust(genesis_file, as_json):
    """Remember GENESIS as the default genesis file (copied to $CXL_HOME/genesis.json).

    Get the file from a source you trust (your organisation, the chain's operators), not
    from the node you query: everything verified is only as good as this file."""
    from genesis.schema import load, save

    doc, ghash = load(genesis_file)
    target = remembered_genesis()
    target.parent.mkdir(parents=True, exist_ok=True)
    save(doc, target)
    out = {"genesis": str(target), "chain_id": doc["chain_id"], "genesis_hash": ghash.hex()}
    if as_json:
        click.echo(json.dumps(out, indent=2, sort_keys=True))
    else:
        click.echo(f"reads are now verified against chain {doc['chain_id']} (genesis {ghash.hex()[:16]}…), "
                   f"copied to {target}")


@light_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@light_options
def light_status(as_json):
    """Which genesis file reads are verified against, and the validator sets verified so far."""
    ctx = click.get_current_context()
    light = from_context(ctx)
    if not isinstance(light, LightClient):
        out = {"genesis": None, "trust_node": light == "trust"}
        if as_json:
            click.echo(json.dumps(out, indent=2, sort_keys=True))
        else:
            click.echo("--trust-node: reads are not verified" if light == "trust" else UNVERIFIED_HINT)
        return
    out = {"genesis": light.genesis_path, "chain_id": light.chain_id, "genesis_hash": light.genesis_hash.hex(),
           "cache": str(light.cache_path),
           "sets": [{"decides_after": s.after, "validators": len(s.validators)} for s in light.sets]}
    if as_json:
        click.echo(json.dumps(out, indent=2, sort_keys=True))
        return
    click.echo(f"genesis   {light.genesis_path} (chain {light.chain_id}, hash {light.genesis_hash.hex()[:16]}…)")
    click.echo(f"cache     {light.cache_path}")
    for s in light.sets:
        click.echo(f"set       {len(s.validators)} validators deciding heights after {s.after}"
                   + (" (genesis)" if s.after == 0 else " (verified)"))


@light_group.command("forget")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@light_options
def light_forget(as_json):
    """Delete the cached validator sets of this genesis (they are followed again from genesis)."""
    light = from_context()
    if not isinstance(light, LightClient):
        raise click.UsageError("give the genesis whose cache to delete: --genesis FILE (or CXL_GENESIS, "
                               "or `cxl light trust FILE`)")
    try:
        light.cache_path.unlink()
        deleted = True
    except FileNotFoundError:
        deleted = False
    if as_json:
        click.echo(json.dumps({"cache": str(light.cache_path), "deleted": deleted}, indent=2, sort_keys=True))
    else:
        click.echo(f"deleted {light.cache_path}" if deleted else f"no cache at {light.cache_path}")
