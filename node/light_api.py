"""What a light client needs to follow validator-set changes from blocks alone (issue 11).

    GET /v1/light/validator_changes?from=H&limit=N

For each block h > H that changed the validator set (the `m/vset/<h>` index, oldest
first, at most N): the header of block h, whose `next_validators_hash` commits to the new
set; its commit certificate, signed by the set that decided h (the one the client already
trusts); and the new set, as the genesis file writes validators ({org, key, p2p, api}, in
set order). While height h's state tree is kept the change also carries a state proof of
the `validators` entry against header h's state root, which binds the set's order, orgs
and endpoints too (`next_validators_hash` binds only the sorted keys).

A client trusts nothing here: docs/protocol.md §6.2 says how it checks each change, and
ledger/lightclient.py does it. `more` is true when the page is full (ask again with
`from` = the last change's height).
"""

from __future__ import annotations

import re

from aiohttp import web

from ledger import statetree
from ledger.encoding import encode
from node import api, views
from node.errors import BadRequest, NotFound
from node.openapi import add_openapi_paths

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_HEIGHT = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")
_PARAMS = ("from", "limit")


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise BadRequest(f"{name}: give it once", "bad_query")
    if not values:
        return default
    text = values[0]
    if not _DIGITS.fullmatch(text) or not lo <= int(text) <= hi:
        raise BadRequest(f"{name}: expected a whole number from {lo} to {hi}, got {text!r}", f"bad_{name}")
    return int(text)


def _state_proof(chain, height: int) -> str | None:
    """The `validators` entry's proof at `height`, hex, or None once that height is pruned."""
    if statetree.root_ref(chain.store, height) is None:
        return None
    try:
        _, proof = statetree.prove(chain.store, b"validators", height)
    except statetree.StateTreeError:  # pruned while reading
        return None
    return proof.encode().hex()


def change_view(chain, height: int, validators: list[dict]) -> dict:
    block, cert = chain.get_block(height), chain.get_cert(height)
    if block is None or cert is None:  # e.g. a state-synced node that never stored that block
        raise NotFound(f"this node does not hold block {height}, which changed the validator set; "
                       "ask a node that replayed from genesis", "unknown_block")
    return {
        "height": height,
        "header": views.header_view(block.header),
        "header_raw": views.b64(block.header.encode()),
        "certificate": views.certificate_view(cert),
        "certificate_raw": views.b64(cert.encode()),
        "validators": [{"org": v["org"], "key": v["key"].hex(), "p2p": v["p2p"], "api": v["api"]} for v in validators],
        "validators_value": encode(validators).hex(),
        "state_proof": _state_proof(chain, height),
    }


async def get_validator_changes(request: web.Request) -> web.Response:
    unknown = sorted(set(request.query) - set(_PARAMS))
    if unknown:
        raise BadRequest(f"unknown query parameter(s) {', '.join(unknown)}; known: from, limit", "bad_query")
    after = _int_param(request, "from", 0, 0, MAX_HEIGHT - 1)
    limit = _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    chain = request.app[api.NODE].chain
    head = chain.height
    changes = [change_view(chain, h, vals) for h, vals in chain.validator_changes(after + 1, limit) if h <= head]
    return api.json_response({"from": after, "limit": limit, "head": head, "changes": changes,
                              "more": len(changes) == limit})


ROUTES = [web.get("/v1/light/validator_changes", get_validator_changes)]

_ERR = {"$ref": "#/components/schemas/Error"}
_HEX = {"type": "string", "pattern": "^[0-9a-f]*$"}
OPENAPI_SCHEMAS = {
    "ValidatorChange": {"type": "object", "required": ["height", "header_raw", "certificate_raw", "validators"],
                        "properties": {
        "height": {"type": "integer", "description": "the block that changed the set; the new set decides height+1 on"},
        "header": {"$ref": "#/components/schemas/Header"},
        "header_raw": {"type": "string", "format": "byte", "description": "canonical header encoding (base64)"},
        "certificate": {"$ref": "#/components/schemas/Certificate"},
        "certificate_raw": {"type": "string", "format": "byte",
                            "description": "the block's commit certificate, signed by the set deciding `height`"},
        "validators": {"type": "array", "description": "the new set in set order, as in the genesis file",
                       "items": {"type": "object", "properties": {
                           "org": {"type": "string"}, "key": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                           "p2p": {"type": "string"}, "api": {"type": "string"}}}},
        "validators_value": {**_HEX, "description": "the `validators` state value (canonical msgpack) after the block"},
        "state_proof": {**_HEX, "nullable": True,
                        "description": "state proof of key `validators` against header.state_root (docs/protocol.md "
                                       "§8.3); null once that height's state tree is pruned"}}},
}
OPENAPI_PATHS = {
    "/v1/light/validator_changes": {"get": {
        "summary": "Validator-set changes after a height, each with the certified header committing to the new set",
        "parameters": [
            {"name": "from", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 0, "maximum": MAX_HEIGHT - 1, "default": 0},
             "description": "changes made by blocks above this height (0: since genesis)"},
            {"name": "limit", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}}],
        "responses": {
            "200": {"description": "changes, oldest first", "content": {"application/json": {"schema": {
                "type": "object", "properties": {
                    "from": {"type": "integer"}, "limit": {"type": "integer"},
                    "head": {"type": "integer", "description": "this node's height"},
                    "more": {"type": "boolean", "description": "the page is full: ask again from the last height"},
                    "changes": {"type": "array", "items": {"$ref": "#/components/schemas/ValidatorChange"}}}}}}},
            "400": {"description": "bad from (bad_from), limit (bad_limit) or an unknown parameter (bad_query)",
                    "content": {"application/json": {"schema": _ERR}}},
            "404": {"description": "this node lacks a block that changed the set (unknown_block)",
                    "content": {"application/json": {"schema": _ERR}}}}}},
}


@api.register_extension
def install(app: web.Application, node) -> None:
    api.add_routes(app, ROUTES)
    add_openapi_paths(app, OPENAPI_PATHS, OPENAPI_SCHEMAS)
