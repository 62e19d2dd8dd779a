"""The genesis file: JSON schema, validation with errors that name the field, and its hash.

Layout (JSON)::

    {
      "chain_id": "cxl-local",                 1-64 chars, no NUL
      "genesis_time_ms": 1764115200000,         ms since the epoch
      "params": {"block_interval_ms": 100, …},  optional; see ledger.genesis_state.DEFAULT_PARAMS
      "orgs": [{"id": "acme", "name": "Acme DC",
                "members": [{"key": "<hex ed25519 public key>", "role": "admin|operator|auditor"}]}],
      "validators": [{"org": "acme", "key": "<hex node key>",
                      "p2p": "http://127.0.0.1:26601", "api": "http://127.0.0.1:26701"}],
      "balances": [{"address": "cx…", "amount": 1000000}]
    }

The genesis hash is SHA-256 of the canonical msgpack encoding of the validated document.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ledger.accounts import MAX_AMOUNT
from ledger.crypto import address_of, address_problem, parse_hex
from ledger.encoding import encode, sha256
from ledger.errors import GenesisError
from ledger.genesis_state import DEFAULT_PARAMS
from ledger.governance import ORG_ID, PARAM_RANGES

ROLES = ("admin", "operator", "auditor")
TOP_FIELDS = {"chain_id", "genesis_time_ms", "params", "orgs", "validators", "balances"}
ORG_FIELDS = {"id", "name", "members"}
MEMBER_FIELDS = {"key", "role"}
VALIDATOR_FIELDS = {"org", "key", "p2p", "api"}
BALANCE_FIELDS = {"address", "amount"}


def _fail(field: str, problem: str):
    raise GenesisError(f"{field}: {problem}")


def _int(value, field: str, lo: int = 0, hi: int = 2**62) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        _fail(field, f"must be an integer in [{lo}, {hi}]")
    return value


def _hexkey(value, field: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{64}", value):
        _fail(field, "must be a 32-byte public key as 64 lower-case hex digits")
    return value


def _url(value, field: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"https?://[^\s/]+(:\d+)?/?", value):
        _fail(field, "must be a URL like http://host:port")
    return value.rstrip("/")


def _only(obj: dict, allowed: set[str], where: str) -> None:
    """Refuse fields the schema does not know: they would be dropped by normalisation, so two
    different files would get one genesis hash."""
    unknown = set(obj) - allowed
    if unknown:
        name = sorted(map(str, unknown))[0]
        field = f"{where}.{name}" if where else name
        _fail(field, f"unknown field (allowed: {', '.join(sorted(allowed))})")


def validate(doc) -> dict:
    """Check a parsed genesis document; return it normalised. Raises GenesisError."""
    if not isinstance(doc, dict):
        _fail("genesis", "must be a JSON object")
    _only(doc, TOP_FIELDS, "")
    chain_id = doc.get("chain_id")
    if not isinstance(chain_id, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", chain_id):
        _fail("chain_id", "must be 1-64 characters of letters, digits, '.', '_' or '-'")
    out = {"chain_id": chain_id, "genesis_time_ms": _int(doc.get("genesis_time_ms"), "genesis_time_ms")}

    params = doc.get("params", {})
    if not isinstance(params, dict):
        _fail("params", "must be an object")
    for name, value in params.items():
        if name not in DEFAULT_PARAMS:
            _fail(f"params.{name}", f"unknown parameter (known: {', '.join(sorted(DEFAULT_PARAMS))})")
        lo, hi = PARAM_RANGES[name]
        _int(value, f"params.{name}", lo, hi)
    out["params"] = dict(sorted(params.items()))
    num = params.get("gov_threshold_num", DEFAULT_PARAMS["gov_threshold_num"])
    if num > params.get("gov_threshold_den", DEFAULT_PARAMS["gov_threshold_den"]):
        _fail("params.gov_threshold_num", "must not exceed gov_threshold_den (no proposal could ever pass)")

    orgs = doc.get("orgs")
    if not isinstance(orgs, list) or not orgs:
        _fail("orgs", "must be a non-empty list")
    org_ids: set[str] = set()
    member_keys: set[str] = set()
    out["orgs"] = []
    for i, org in enumerate(orgs):
        where = f"orgs[{i}]"
        if not isinstance(org, dict):
            _fail(where, "must be an object")
        _only(org, ORG_FIELDS, where)
        oid = org.get("id")
        if not isinstance(oid, str) or not ORG_ID.match(oid):
            _fail(f"{where}.id", "must be 1-32 characters of a-z, 0-9 and '-'")
        if oid in org_ids:
            _fail(f"{where}.id", f"duplicate organisation id {oid!r}")
        org_ids.add(oid)
        name = org.get("name")
        if not isinstance(name, str) or not 0 < len(name) <= 128:
            _fail(f"{where}.name", "must be 1-128 characters")
        members = org.get("members")
        if not isinstance(members, list) or not members:
            _fail(f"{where}.members", "must be a non-empty list")
        norm_members = []
        for j, m in enumerate(members):
            mw = f"{where}.members[{j}]"
            if not isinstance(m, dict):
                _fail(mw, "must be an object")
            _only(m, MEMBER_FIELDS, mw)
            key = _hexkey(m.get("key"), f"{mw}.key")
            if key in member_keys:
                _fail(f"{mw}.key", "this key is already a member (of this or another organisation)")
            member_keys.add(key)
            if m.get("role") not in ROLES:
                _fail(f"{mw}.role", f"must be one of {', '.join(ROLES)}")
            norm_members.append({"key": key, "role": m["role"]})
        if not any(m["role"] == "admin" for m in norm_members):
            _fail(f"{where}.members", "needs at least one admin")
        out["orgs"].append({"id": oid, "name": name, "members": norm_members})

    vals = doc.get("validators")
    if not isinstance(vals, list) or not vals:
        _fail("validators", "must be a non-empty list")
    seen_keys: set[str] = set()
    out["validators"] = []
    for i, v in enumerate(vals):
        where = f"validators[{i}]"
        if not isinstance(v, dict):
            _fail(where, "must be an object")
        _only(v, VALIDATOR_FIELDS, where)
        if not isinstance(v.get("org"), str) or v["org"] not in org_ids:
            _fail(f"{where}.org", f"names no organisation in orgs ({v.get('org')!r})")
        key = _hexkey(v.get("key"), f"{where}.key")
        if key in seen_keys:
            _fail(f"{where}.key", "duplicate validator key")
        seen_keys.add(key)
        out["validators"].append(
            {"org": v["org"], "key": key, "p2p": _url(v.get("p2p"), f"{where}.p2p"), "api": _url(v.get("api"), f"{where}.api")}
        )

    out["balances"] = []
    seen_addr: set[str] = set()
    balances = doc.get("balances", [])
    if not isinstance(balances, list):
        _fail("balances", "must be a list")
    for i, b in enumerate(balances):
        where = f"balances[{i}]"
        if not isinstance(b, dict):
            _fail(where, "must be an object")
        _only(b, BALANCE_FIELDS, where)
        problem = address_problem(b.get("address"))
        if problem is not None:
            _fail(f"{where}.address", f"must be a checksummed address (cx1...): {problem[1]}")
        if b["address"] in seen_addr:
            _fail(f"{where}.address", "duplicate address")
        seen_addr.add(b["address"])
        out["balances"].append({"address": b["address"], "amount": _int(b.get("amount"), f"{where}.amount", 1)})
    # the supply is stored as one integer: it must stay encodable (and leave room for mint)
    if sum(b["amount"] for b in out["balances"]) > MAX_AMOUNT:
        _fail("balances", f"the total of all balances must not exceed {MAX_AMOUNT}")
    return out


def genesis_hash(doc: dict) -> bytes:
    return sha256(encode(doc))


def load(path: str | Path) -> tuple[dict, bytes]:
    """Read, parse and validate a genesis file; return (document, hash)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise GenesisError(f"cannot read genesis file {path}: {exc.strerror}") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GenesisError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from exc
    doc = validate(raw)
    return doc, genesis_hash(doc)


def save(doc: dict, path: str | Path) -> bytes:
    doc = validate(doc)
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")
    return genesis_hash(doc)


def member_address(key_hex: str) -> str:
    return address_of(parse_hex(key_hex, 32))
