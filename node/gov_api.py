"""Governance endpoints and dry runs of the client API (loaded by `node.api` through
EXTENSION_MODULES, registered with `register_extension` like `node.market_api`).

    GET  /v1/proposals[?status=&cursor=&limit=]   proposals, newest first, with their tally
    GET  /v1/proposals/{id}                        one proposal: actions, votes by org, threshold, expiry
    GET  /v1/orgs                                  organisations with member counts by role
    GET  /v1/orgs/{id}                             one organisation: members, validators
    GET  /v1/params                                chain parameters: value, default, allowed range
    POST /v1/txs/simulate                          dry run: the receipt the next block would give

Reads come from the committed state. A dry run executes on a view over the committed
state at the next height that is dropped afterwards (`ledger.simulate`): it never writes
to the store or the mempool. It runs synchronously on the event loop between two awaits,
like every other read here, so it cannot interleave with a commit (the runner commits on
the same loop); its cost is bounded by the request body limit of POST /v1/txs, at most
`MAX_SIMULATE_TXS` transactions, `MAX_STEPS` executions (pending ones included) and
`MAX_INFLIGHT` dry runs waiting for their signature checks (503 `simulate_busy` beyond).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json

from aiohttp import web

from ledger import gov_queries as gq
from ledger import accounts, governance
from ledger.accounts import PARAMS_KEY
from ledger.encoding import sha256
from ledger.governance import ORG_ID
from ledger.simulate import Simulated, SimulationTooLarge, simulate
from node import api, proofs, views
from node.errors import BadRequest, NodeError, NotFound, TxAdmissionError
from node.mempool import check_raws
from node.openapi import PROVE_PARAM, add_openapi_paths
from node.query import DEFAULT_PAGE, MAX_PAGE, Query, path_id
from node.runner import now_ms  # the node's one clock, as the proposer uses it

MAX_SIMULATE_TXS = 100
MAX_STEPS = 500   # ~30 ms of execution on the event loop at most (scripts/bench_simulate.py)
MAX_INFLIGHT = 8
_INFLIGHT: web.AppKey = web.AppKey("cxl_simulate_inflight", list)


def _node(request: web.Request):
    return request.app[api.NODE]


# -- governance reads ------------------------------------------------------------------------

async def get_proposals(request: web.Request) -> web.Response:
    q = Query(request, {"status", "cursor", "limit"})
    status = q.choice("status", gq.PROPOSAL_STATUSES)
    cursor = q.int("cursor", None, 1)
    limit = q.int("limit", DEFAULT_PAGE, 1, MAX_PAGE)
    node = _node(request)
    page = gq.list_proposals(node.chain.state(), node.chain.height, status=status, before=cursor, limit=limit)
    return api.json_response({"items": views.jsonable(page["items"]), "next_cursor": page["next_cursor"],
                              "height": node.chain.height})


async def get_proposal(request: web.Request) -> web.Response:
    pid = path_id(request, "proposal")
    node = _node(request)
    state = node.chain.state()
    proposal = governance.get_proposal(state, pid)
    if proposal is None:
        raise NotFound(f"no proposal {request.match_info['id']}; list proposals with GET /v1/proposals",
                       "unknown_proposal")
    view = gq.proposal_view(state, proposal, node.chain.height)
    return api.json_response(proofs.with_proof(
        request, node.chain, {**views.jsonable(view), "height": node.chain.height}, [governance.proposal_key(pid)],
        ["the stored proposal (threshold and tallies by org are derived from it and the org list)"]))


async def get_orgs(request: web.Request) -> web.Response:
    Query(request, set())
    node = _node(request)
    return api.json_response({"items": gq.list_orgs(node.chain.state()), "height": node.chain.height})


async def get_org(request: web.Request) -> web.Response:
    org_id = request.match_info["id"]
    if not ORG_ID.match(org_id):
        raise BadRequest("organisation id: 1-32 characters of a-z, 0-9 and '-'", "bad_org_id")
    node = _node(request)
    view = gq.org_view(node.chain.state(), org_id)
    if view is None:
        raise NotFound(f"no organisation {org_id}; list them with GET /v1/orgs", "unknown_org")
    return api.json_response(proofs.with_proof(
        request, node.chain, {**views.jsonable(view), "height": node.chain.height}, [accounts.org_key(org_id)],
        ["the organisation's id and name (its members and validators are listed from other entries)"]))


async def get_params(request: web.Request) -> web.Response:
    Query(request, {"prove"})
    node = _node(request)
    doc = {"params": gq.params_view(node.chain.state()), "height": node.chain.height}
    return api.json_response(proofs.with_proof(request, node.chain, doc, [PARAMS_KEY], ["params"]))


# -- dry runs ---------------------------------------------------------------------------------

def _raw_items(body) -> tuple[list[bytes], bool]:
    """The base64 transactions of ``{"tx": ...}`` or ``{"txs": [...]}``; True for the single form."""
    if not isinstance(body, dict) or (("tx" in body) == ("txs" in body)) or set(body) - {"tx", "txs"}:
        raise BadRequest('body must be {"tx": "<base64>"} or {"txs": ["<base64>", ...]}', "bad_request")
    single = "tx" in body
    items = [body["tx"]] if single else body["txs"]
    if not isinstance(items, list) or not items:
        raise BadRequest("txs: expected a non-empty list of base64 strings", "bad_request")
    if len(items) > MAX_SIMULATE_TXS:
        raise NodeError(f"txs: {len(items)} transactions, at most {MAX_SIMULATE_TXS} per dry run",
                        "batch_too_large", 413)
    raws = []
    for i, item in enumerate(items):
        where = "tx" if single else f"txs[{i}]"
        if not isinstance(item, str):
            raise BadRequest(f"{where}: expected a base64 string", "bad_base64")
        try:
            raws.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError):
            raise BadRequest(f"{where}: not valid base64", "bad_base64") from None
    return raws, single


def _check_all(raws: list[bytes], chain_id: str, max_tx_bytes: int) -> list:
    """Stateless admission (size, decoding, chain id, signature) as POST /v1/txs does it."""
    return [Simulated(sha256(raw), r.code, r.message, {}, "admission") if isinstance(r, TxAdmissionError) else r
            for raw, r in zip(raws, check_raws(raws, chain_id, max_tx_bytes))]


def _result_json(r: Simulated) -> dict:
    out = {"hash": r.hash.hex(), "ok": r.ok, "code": r.code, "message": r.message,
           "result": views.jsonable(r.result), "stage": r.stage}
    if r.preview is not None:
        out["preview"] = views.jsonable(r.preview)
    return out


async def post_simulate(request: web.Request) -> web.Response:
    node = _node(request)
    body = await api.read_json(request)  # the bounds of POST /v1/txs: size, body deadline, depth
    raws, single = _raw_items(body)
    inflight = request.app[_INFLIGHT]
    if inflight[0] >= MAX_INFLIGHT:
        raise NodeError(f"{MAX_INFLIGHT} dry runs are in progress; retry shortly", "simulate_busy", 503)
    inflight[0] += 1
    try:
        checked = await asyncio.get_running_loop().run_in_executor(
            None, _check_all, raws, node.chain_id, node.mempool.max_tx_bytes)
    finally:
        inflight[0] -= 1
    # from here to the response nothing awaits: the committed state cannot move underneath
    chain = node.chain
    height, time_ms = chain.height + 1, max(now_ms(), chain.head.time_ms + 1)
    ctx = chain.block_context(height, time_ms)
    signed = [c for c in checked if not isinstance(c, Simulated)]
    try:
        ran = iter(simulate(chain.store, ctx, signed, node.mempool.pending_run, max_steps=MAX_STEPS))
    except SimulationTooLarge as exc:
        raise NodeError(exc.message, exc.code, 413) from None
    results = [_result_json(c if isinstance(c, Simulated) else next(ran)) for c in checked]
    if single:
        return api.json_response({**results[0], "height": height, "time_ms": time_ms})
    return api.json_response({"results": results, "height": height, "time_ms": time_ms})


ROUTES = [
    web.get("/v1/proposals", get_proposals),
    web.get("/v1/proposals/{id}", get_proposal),
    web.get("/v1/orgs", get_orgs),
    web.get("/v1/orgs/{id}", get_org),
    web.get("/v1/params", get_params),
    web.post("/v1/txs/simulate", post_simulate),
]


# -- OpenAPI ------------------------------------------------------------------------------------

def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _err(*statuses: int) -> dict:
    text = {400: "Bad query parameter, id or body", 404: "Unknown id", 413: "Body or dry run too large",
            503: "Too many dry runs in progress (simulate_busy)"}
    return {str(s): _ok(_ref("Error"), text[s]) for s in statuses}


_INT = {"type": "integer"}
_STR = {"type": "string"}
_B64 = {"type": "string", "format": "byte"}

OPENAPI_SCHEMAS = {
    "Proposal": {"type": "object", "description": "see docs/protocol.md §14", "properties": {
        "id": _INT, "status": {"type": "string", "enum": list(gq.PROPOSAL_STATUSES)},
        "actions": {"type": "array", "items": {"type": "object", "properties": {
            "action": _STR, "args": {"type": "object", "description": "bytes as hex"}}}},
        "proposer": _STR, "created_height": _INT, "expires_height": _INT,
        "decided_height": {**_INT, "nullable": True},
        "votes": {"type": "array", "items": {"type": "object", "properties": {
            "org": _STR, "vote": {"type": "string", "description": "yes, no or none"}}}},
        "tally": {"type": "object", "properties": {
            "yes": _INT, "no": _INT, "not_voted": _INT, "orgs": _INT,
            "threshold": {"type": "string", "example": "2/3"}, "yes_needed": _INT}},
        "reason": {"type": "string", "description": "failed: why"},
        "error_code": {"type": "string", "description": "failed multi-action proposal: the action's code"},
        "failed_action": {"type": "integer", "description": "failed multi-action proposal: index of the action"},
        "height": _INT}},
    "OrgSummary": {"type": "object", "properties": {
        "id": _STR, "name": _STR, "validators": _INT,
        "members": {"type": "object", "properties": {"admin": _INT, "operator": _INT, "auditor": _INT}}}},
    "Org": {"type": "object", "properties": {
        "id": _STR, "name": _STR, "height": _INT,
        "members": {"type": "array", "items": {"type": "object", "properties": {
            "address": _STR, "role": _STR, "key": _STR}}},
        "validators": {"type": "array", "items": {"type": "object", "properties": {
            "key": _STR, "org": _STR, "p2p": _STR, "api": _STR, "address": _STR}}},
        "validators_next": {"type": "object", "description": "an approved change, active from `height`"}}},
    "Params": {"type": "object", "properties": {"height": _INT, "params": {
        "type": "object", "additionalProperties": {"type": "object", "properties": {
            "value": _INT, "default": {**_INT, "nullable": True},
            "range": {"type": "array", "items": _INT, "nullable": True}}}}}},
    "Simulated": {"type": "object", "properties": {
        "hash": _STR, "ok": {"type": "boolean", "description": "code ok, no failed proposal, no preview failure"},
        "code": {"type": "string", "description": "ok or a stable error code"}, "message": _STR,
        "result": {"type": "object"},
        "stage": {"type": "string", "enum": ["admission", "execution"],
                  "description": "admission: it could never be in a block; execution: the receipt it would get"},
        "preview": {"type": "object", "description": "open proposal whose actions would fail if approved now: "
                                                     "reason, error_code, failed_action"},
        "height": _INT, "time_ms": _INT}},
}

OPENAPI_PATHS = {
    "/v1/proposals": {"get": {
        "summary": "Governance proposals, newest first, with votes by organisation and tally",
        "parameters": [
            {"name": "status", "in": "query", "required": False,
             "schema": {"type": "string", "enum": list(gq.PROPOSAL_STATUSES)}},
            {"name": "cursor", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": 2**62},
             "description": "next_cursor of the previous page (older proposals follow)"},
            {"name": "limit", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}}],
        "responses": {"200": _ok({"type": "object", "properties": {
            "items": {"type": "array", "items": _ref("Proposal")},
            "next_cursor": {"type": "integer", "nullable": True}, "height": _INT}}, "A page of proposals"),
            **_err(400)}}},
    "/v1/proposals/{id}": {"get": {
        "summary": "One proposal: actions, status, votes by organisation, threshold, expiry",
        "parameters": [{"name": "id", "in": "path", "required": True,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}}, PROVE_PARAM],
        "responses": {"200": _ok(_ref("Proposal"), "Proposal"), **_err(400, 404)}}},
    "/v1/orgs": {"get": {
        "summary": "Organisations with member counts by role and validator count",
        "responses": {"200": _ok({"type": "object", "properties": {
            "items": {"type": "array", "items": _ref("OrgSummary")}, "height": _INT}}, "Organisations")}}},
    "/v1/orgs/{id}": {"get": {
        "summary": "One organisation: members (address, role, key) and validators",
        "parameters": [{"name": "id", "in": "path", "required": True,
                        "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,31}$"}}, PROVE_PARAM],
        "responses": {"200": _ok(_ref("Org"), "Organisation"), **_err(400, 404)}}},
    "/v1/params": {"get": {
        "summary": "Chain parameters: current value, default, range governance may set",
        "parameters": [PROVE_PARAM],
        "responses": {"200": _ok(_ref("Params"), "Parameters"), **_err(400)}}},
    "/v1/txs/simulate": {"post": {
        "summary": "Dry run: execute at the next height without committing; the receipt it would get",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "description": "exactly one of tx / txs (executed in order)",
            "properties": {"tx": _B64, "txs": {"type": "array", "items": _B64, "maxItems": MAX_SIMULATE_TXS}}}}}},
        "responses": {"200": _ok({"oneOf": [_ref("Simulated"), {"type": "object", "properties": {
            "results": {"type": "array", "items": _ref("Simulated")}, "height": _INT, "time_ms": _INT}}]},
            "The result for {tx}, or one per item for {txs}"), **_err(400, 413, 503)}}},
}


def openapi_document() -> dict:
    """The node's OpenAPI document with market and governance paths (docs/openapi.json)."""
    from node import light_api, market_api, snapshot_api

    doc = market_api.openapi_document()
    doc["paths"].update(OPENAPI_PATHS)
    doc["paths"].update(snapshot_api.OPENAPI_PATHS)
    doc["paths"].update(light_api.OPENAPI_PATHS)
    doc["components"]["schemas"].update(OPENAPI_SCHEMAS)
    doc["components"]["schemas"].update(light_api.OPENAPI_SCHEMAS)
    return doc


@api.register_extension
def install(app: web.Application, node) -> None:
    app[_INFLIGHT] = [0]
    api.add_routes(app, ROUTES)
    add_openapi_paths(app, OPENAPI_PATHS, OPENAPI_SCHEMAS)


if __name__ == "__main__":  # pragma: no cover - `python -m node.gov_api > docs/openapi.json`
    print(json.dumps(openapi_document(), indent=2))
