"""Market endpoints of the client API (loaded by `node.api` through EXTENSION_MODULES).

    GET /v1/listings                   filtered, paged listings (query parameters below)
    GET /v1/listings/{id}              one listing, with available units and live attestations
    GET /v1/leases?tenant=|provider=   a tenant's (address) or provider org's leases, paged
    GET /v1/leases/{id}                one lease with its usage reports and settlement records
    GET /v1/attestations?subject=&subject_type=org|listing   attestations about a subject
    GET /v1/attestations/{id}          one attestation
    GET /v1/accounts/{address}/market  balance, nonce, and escrow held for open leases

`GET /v1/accounts/{address}` belongs to `node.api`, and the extension hook can only add
routes (a second handler for the same path never runs), so balance + escrow live at
``…/market``. Everything is read from the committed state (`chain.state()`); bytes are
lower-case hex. Bad query parameters answer 400 ``bad_query``; unknown ids 404 with
``unknown_listing`` / ``unknown_lease`` / ``unknown_attestation``.

"Now" for availability windows and attestation liveness is the node's wall clock, the
best guess of the next block's time (block time is what the chain decides with).
"""

from __future__ import annotations

import time

from aiohttp import web

from ledger.market import queries
from ledger.market.common import attestation_key, lease_key, listing_key
from node import api, proofs, views
from node.errors import BadRequest, NotFound
from node.openapi import ADDRESS, ADDRESS_PARAM, PROVE_PARAM, add_openapi_paths
from node.query import DEFAULT_PAGE, MAX_INT as _MAX_INT, MAX_PAGE, Query, path_id, positive_id

LISTING_STATUSES = ("active", "paused", "withdrawn", "any")
LEASE_STATUSES = ("pending", "active", "ended", "closed", "settled", "rejected", "cancelled", "expired")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- query parameters ---------------------------------------------------------------------

def _address(text: str, name: str) -> str:
    try:
        return api.parse_address(text, name)
    except BadRequest as exc:
        raise BadRequest(exc.message, "bad_query") from None


def _state(request: web.Request):
    node = request.app[api.NODE]
    return node, node.chain.state()


def _page_json(page: dict, node) -> web.Response:
    return api.json_response({"items": views.jsonable(page["items"]), "next_cursor": page["next_cursor"],
                              "height": node.chain.height})


# -- handlers -------------------------------------------------------------------------------

LISTING_QUERY = {
    "region", "jurisdiction", "feature", "provider", "min_vcpu_milli", "min_memory_mib", "min_storage_gib",
    "min_gpu_count", "gpu_model", "min_units", "max_price", "attested_by", "status", "include_unavailable",
    "cursor", "limit",
}


async def get_listings(request: web.Request) -> web.Response:
    q = Query(request, LISTING_QUERY)
    cursor, limit = q.page()
    status = q.choice("status", LISTING_STATUSES, "active")
    filters = dict(
        region=q.text("region"), jurisdiction=q.text("jurisdiction"), feature=q.texts("feature"),
        provider=q.text("provider"), min_vcpu_milli=q.int("min_vcpu_milli", 0),
        min_memory_mib=q.int("min_memory_mib", 0), min_storage_gib=q.int("min_storage_gib", 0),
        min_gpu_count=q.int("min_gpu_count", 0), gpu_model=q.text("gpu_model"), min_units=q.int("min_units", 0),
        max_price=q.int("max_price", None, 1), attested_by=q.texts("attested_by"),
    )
    include_unavailable = q.flag("include_unavailable")
    node, state = _state(request)
    page = queries.list_listings(state, **filters, status=None if status == "any" else status,
                                 now_ms=None if include_unavailable and not filters["attested_by"] else _now_ms(),
                                 cursor=cursor, limit=limit)
    return _page_json(page, node)


async def get_listing(request: web.Request) -> web.Response:
    lid = path_id(request, "listing")
    node, state = _state(request)
    listing = queries.get_listing(state, lid, now_ms=_now_ms())
    if listing is None:
        raise NotFound(f"no listing {lid}; find listings with GET /v1/listings", "unknown_listing")
    return api.json_response(proofs.with_proof(request, node.chain, views.jsonable(listing), [listing_key(lid)],
                                               ["the stored listing (status at the current time is derived)"]))


async def get_leases(request: web.Request) -> web.Response:
    q = Query(request, {"tenant", "provider", "status", "cursor", "limit"})
    tenant, provider = q.text("tenant"), q.text("provider")
    if (tenant is None) == (provider is None):
        raise BadRequest("give exactly one of tenant=ADDRESS or provider=ORG", "bad_query")
    status = q.choice("status", LEASE_STATUSES, None)
    cursor, limit = q.page()
    node, state = _state(request)
    page = queries.list_leases(state, tenant=None if tenant is None else _address(tenant, "tenant"),
                               provider=provider, status=status, cursor=cursor, limit=limit)
    return _page_json(page, node)


async def get_lease(request: web.Request) -> web.Response:
    lid = path_id(request, "lease")
    node, state = _state(request)
    lease = queries.get_lease(state, lid)
    if lease is None:
        raise NotFound(f"no lease {lid}; list leases with GET /v1/leases?tenant=ADDRESS", "unknown_lease")
    return api.json_response(proofs.with_proof(request, node.chain, views.jsonable(lease), [lease_key(lid)],
                                               ["the stored lease"]))


async def get_attestations(request: web.Request) -> web.Response:
    q = Query(request, {"subject", "subject_type", "live"})
    subject_type = q.choice("subject_type", ("org", "listing"), None)
    subject = q.text("subject")
    if subject_type is None or subject is None:
        raise BadRequest("give subject_type=org|listing and subject=ORG_ID or LISTING_ID", "bad_query")
    if subject_type == "listing":
        listing = positive_id(subject)
        if listing is None:
            raise BadRequest(f"subject: a listing id is a positive whole number, got {subject!r}", "bad_query")
        subject = listing
    live_only = q.flag("live")
    node, state = _state(request)
    items = queries.list_attestations(state, subject_type, subject, now_ms=_now_ms(), include_inactive=not live_only)
    return api.json_response({"items": views.jsonable(items), "height": node.chain.height})


async def get_attestation(request: web.Request) -> web.Response:
    aid = path_id(request, "attestation")
    node, state = _state(request)
    att = queries.get_attestation(state, aid)
    if att is None:
        raise NotFound(f"no attestation {aid}", "unknown_attestation")
    from ledger.market.attestations import is_live

    return api.json_response(proofs.with_proof(request, node.chain, views.jsonable({**att, "live": is_live(att, _now_ms())}),
                                               [attestation_key(aid)], ["the stored attestation (live is derived)"]))


async def get_account_market(request: web.Request) -> web.Response:
    address = api.parse_address(request.match_info["address"])
    node, state = _state(request)
    view = queries.account_view(state, address)
    return api.json_response({**views.jsonable(view), "height": node.chain.height})


ROUTES = [
    web.get("/v1/listings", get_listings),
    web.get("/v1/listings/{id}", get_listing),
    web.get("/v1/leases", get_leases),
    web.get("/v1/leases/{id}", get_lease),
    web.get("/v1/attestations", get_attestations),
    web.get("/v1/attestations/{id}", get_attestation),
    web.get("/v1/accounts/{address}/market", get_account_market),
]


# -- OpenAPI --------------------------------------------------------------------------------

def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _err(*statuses: int) -> dict:
    text = {400: "Bad query parameter or id (code bad_query, bad_*_id)", 404: "Unknown id"}
    return {str(s): _ok(_ref("Error"), text[s]) for s in statuses}


# what Query.text / Query.texts accept: 1-64 characters, no control characters (texts: comma-separated)
_TEXT_SCHEMA = {"type": "string", "pattern": "^[^\\x00-\\x1f]{1,64}$"}
_TEXTS_SCHEMA = {"type": "string", "pattern": "^[^\\x00-\\x1f,]{1,64}(,[^\\x00-\\x1f,]{1,64})*$"}


def _qp(name: str, description: str, schema: dict | None = None, required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "schema": schema or _TEXT_SCHEMA,
            "description": description}


_INT = {"type": "integer", "minimum": 0, "maximum": _MAX_INT}
_ID_PARAM = {"name": "id", "in": "path", "required": True,
             "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}}
_PAGE_PARAMS = [
    _qp("cursor", "next_cursor of the previous page", _INT),
    _qp("limit", f"items per page (1-{MAX_PAGE}, default {DEFAULT_PAGE})",
        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
]
_HEX = {"type": "string", "pattern": "^[0-9a-f]*$"}


def _page_schema(item: str) -> dict:
    return {"type": "object", "properties": {
        "items": {"type": "array", "items": _ref(item)},
        "next_cursor": {"type": "integer", "nullable": True, "description": "pass as cursor; null on the last page"},
        "height": {"type": "integer"}}}


OPENAPI_SCHEMAS = {
    "Listing": {"type": "object", "description": "see docs/marketplace.md (state keys); units in minor units",
                "properties": {
                    "id": {"type": "integer"}, "provider": {"type": "string"}, "payee": {"type": "string"},
                    "resources": {"type": "object", "properties": {
                        "vcpu_milli": {"type": "integer"}, "memory_mib": {"type": "integer"},
                        "storage_gib": {"type": "integer"}, "gpu_count": {"type": "integer"},
                        "gpu_model": {"type": "string"}}},
                    "units": {"type": "integer"}, "reserved": {"type": "integer"},
                    "available_units": {"type": "integer"}, "region": {"type": "string"},
                    "jurisdiction": {"type": "string"}, "features": {"type": "array", "items": {"type": "string"}},
                    "price": {"type": "integer", "description": "micro-credits per unit-hour"},
                    "available_from_ms": {"type": "integer"}, "available_until_ms": {"type": "integer"},
                    "sla": {"type": "object"}, "status": {"type": "string", "enum": ["active", "paused", "withdrawn"]},
                    "attestations": {"type": "array", "items": _ref("Attestation"),
                                     "description": "GET /v1/listings/{id} only: live attestations"}}},
    "Lease": {"type": "object", "description": "terms copied from the listing, escrow, times; see docs/marketplace.md",
              "properties": {
                  "id": {"type": "integer"}, "listing": {"type": "integer"}, "provider": {"type": "string"},
                  "tenant": {"type": "string"}, "tenant_key": _HEX, "units": {"type": "integer"},
                  "hours": {"type": "integer"}, "price": {"type": "integer"}, "total": {"type": "integer"},
                  "escrow": {"type": "integer"}, "paid": {"type": "integer"}, "penalties": {"type": "integer"},
                  "refunded": {"type": "integer"}, "status": {"type": "string", "enum": list(LEASE_STATUSES)},
                  "sealed_access": {**_HEX, "nullable": True}, "attestation_digest": {**_HEX, "nullable": True},
                  "reports": {"type": "array", "items": {"type": "object"},
                              "description": "GET /v1/leases/{id} only: usage reports by period"},
                  "settlement_records": {"type": "array", "items": {"type": "object"},
                                         "description": "GET /v1/leases/{id} only: settlement records in order"}}},
    "Attestation": {"type": "object", "properties": {
        "id": {"type": "integer"}, "issuer": {"type": "string"}, "issued_by": {"type": "string"},
        "subject_type": {"type": "string", "enum": ["org", "listing"]},
        "subject": {"oneOf": [{"type": "string"}, {"type": "integer"}]}, "claim": {"type": "string"},
        "evidence_digest": _HEX, "issued_ms": {"type": "integer"}, "expires_ms": {"type": "integer"},
        "revoked_ms": {"type": "integer", "nullable": True}, "live": {"type": "boolean"}}},
    "MarketAccount": {"type": "object", "properties": {
        "address": ADDRESS, "balance": {"type": "integer"}, "nonce": {"type": "integer"},
        "member": {"type": "object", "nullable": True},
        "escrow_as_tenant": {"type": "integer", "description": "held in escrow for this account's open leases"},
        "open_leases": {"type": "array", "items": {"type": "integer"}}, "height": {"type": "integer"}}},
}

OPENAPI_PATHS = {
    "/v1/listings": {"get": {
        "summary": "Listings matching every given filter, by id (default: active and inside their window)",
        "parameters": [
            _qp("region", "exact region, e.g. eu-west"), _qp("jurisdiction", "exact jurisdiction, e.g. EU"),
            _qp("feature", "required feature; repeat or comma-separate for several", _TEXTS_SCHEMA),
            _qp("provider", "provider organisation id"),
            _qp("min_vcpu_milli", "per unit, milli-vCPU", _INT), _qp("min_memory_mib", "per unit", _INT),
            _qp("min_storage_gib", "per unit", _INT), _qp("min_gpu_count", "per unit", _INT),
            _qp("gpu_model", "exact GPU model"), _qp("min_units", "available (unreserved) units", _INT),
            _qp("max_price", "highest price per unit-hour (micro-credits)",
                {"type": "integer", "minimum": 1, "maximum": _MAX_INT}),
            _qp("attested_by", "organisation(s) whose live attestation the listing needs (of each feature, "
                               "when features are given); repeatable", _TEXTS_SCHEMA),
            _qp("status", "active (default), paused, withdrawn or any",
                {"type": "string", "enum": list(LISTING_STATUSES)}),
            _qp("include_unavailable", "true: also listings outside their availability window",
                {"type": "boolean"}),
            *_PAGE_PARAMS],
        "responses": {"200": _ok(_page_schema("Listing"), "A page of listings"), **_err(400)}}},
    "/v1/listings/{id}": {"get": {
        "summary": "A listing with available units and its live attestations",
        "parameters": [_ID_PARAM, PROVE_PARAM],
        "responses": {"200": _ok(_ref("Listing"), "Listing"), **_err(400, 404)}}},
    "/v1/leases": {"get": {
        "summary": "Leases of a tenant (address or public key) or of a provider organisation",
        "description": "Give exactly one of tenant / provider (OpenAPI 3.0 cannot state that; neither or "
                       "both answers 400 bad_query).",
        "parameters": [_qp("tenant", "tenant address or public key", ADDRESS_PARAM["schema"]),
                       _qp("provider", "provider organisation id"),
                       _qp("status", "only leases in this status", {"type": "string", "enum": list(LEASE_STATUSES)}),
                       *_PAGE_PARAMS],
        "responses": {"200": _ok(_page_schema("Lease"), "A page of leases"), **_err(400)}}},
    "/v1/leases/{id}": {"get": {
        "summary": "A lease with its usage reports and settlement records",
        "parameters": [_ID_PARAM, PROVE_PARAM],
        "responses": {"200": _ok(_ref("Lease"), "Lease"), **_err(400, 404)}}},
    "/v1/attestations": {"get": {
        "summary": "Attestations about an organisation or a listing (each with `live`)",
        "parameters": [_qp("subject_type", "org or listing", {"type": "string", "enum": ["org", "listing"]}, True),
                       _qp("subject", "organisation id, or a listing id (a whole number >= 1) when "
                                      "subject_type=listing (else 400 bad_query)", None, True),
                       _qp("live", "true: only live ones", {"type": "boolean"})],
        "responses": {"200": _ok({"type": "object", "properties": {
            "items": {"type": "array", "items": _ref("Attestation")}, "height": {"type": "integer"}}},
            "Attestations"), **_err(400)}}},
    "/v1/attestations/{id}": {"get": {
        "summary": "One attestation",
        "parameters": [_ID_PARAM, PROVE_PARAM],
        "responses": {"200": _ok(_ref("Attestation"), "Attestation"), **_err(400, 404)}}},
    "/v1/accounts/{address}/market": {"get": {
        "summary": "Balance, nonce, and the escrow held for the account's open leases",
        "parameters": [ADDRESS_PARAM],
        "responses": {"200": _ok(_ref("MarketAccount"), "Account with escrow"), **_err(400)}}},
}


def openapi_document() -> dict:
    """The node's OpenAPI document with the market paths (what GET /v1/openapi.json serves)."""
    from node.openapi import base_document

    doc = base_document()
    doc["paths"].update(OPENAPI_PATHS)
    doc["components"]["schemas"].update(OPENAPI_SCHEMAS)
    return doc


@api.register_extension
def install(app: web.Application, node) -> None:
    api.add_routes(app, ROUTES)
    add_openapi_paths(app, OPENAPI_PATHS, OPENAPI_SCHEMAS)


if __name__ == "__main__":  # pragma: no cover - `python -m node.market_api > docs/openapi.json`
    import json

    print(json.dumps(openapi_document(), indent=2))
