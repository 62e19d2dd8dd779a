"""The client API: JSON over HTTP (aiohttp).

Every error is ``{"error": {"code": "...", "message": "..."}}`` with the status its
convention says: 400 malformed input, 401 bad signature, 403 sender not permitted,
404 unknown, 405 wrong method, 409 nonce conflict, 413 body or transaction too large,
422 transaction rejected, 429 sender quota, 503 mempool full, 500 a bug.

Other packages add endpoints with `register_extension(fn)` (called with the app and the
node for every app built) or `add_routes(app, routes)`; handlers reach the node through
``request.app[NODE]`` and should raise `NodeError` subclasses for errors.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import importlib
import json
import re
from typing import Callable, Iterable

from aiohttp import web

from ledger.market import queries as market_queries
from ledger.block import quorum
from ledger.crypto import account_address, address_problem

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from ledger import accounts
from node import proofs, views
from node.api_limits import ApiLimits, LongPollBudget, serve
from node.errors import BadRequest, NodeError, NotFound
from node.openapi import openapi_document

NODE: web.AppKey = web.AppKey("cxl_node", object)
LONG_POLLS: web.AppKey = web.AppKey("cxl_long_polls", LongPollBudget)
_EXTENSIONS: list[Callable[[web.Application, object], None]] = []
_HEX32 = re.compile(r"[0-9a-fA-F]{64}")
_HEIGHT = re.compile(r"[0-9]{1,19}")  # ASCII only: str.isdigit() and int() also take "²" and "١"
# a JSON number as a client writes it (ASCII; float() alone also takes "١", "1_0", " 1", "nan")
_SECONDS = re.compile(r"-?(?:[0-9]{1,20}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})(?:[eE][+-]?[0-9]{1,3})?")


def register_extension(fn: Callable[[web.Application, object], None]) -> Callable:
    """Register `fn(app, node)`, called for every client API app built from now on."""
    if fn not in _EXTENSIONS:
        _EXTENSIONS.append(fn)
    return fn


def add_routes(app: web.Application, routes: Iterable[web.AbstractRouteDef]) -> None:
    app.router.add_routes(list(routes))


def json_response(data, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda v: json.dumps(v, separators=(",", ":")))


def error_response(code: str, message: str, status: int) -> web.Response:
    return json_response({"error": {"code": code, "message": message}}, status)


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "body_too_large", 429: "too_many_requests",
               503: "unavailable"}


class TooManyWaits(NodeError):
    """Every long-poll slot (in total or for this client address) is taken."""

    code = "too_many_waits"
    status = 429


class BodyTimeout(NodeError):
    code = "body_timeout"
    status = 408


class BadBody(BadRequest):
    code = "bad_body"


def _node_error_response(exc: NodeError) -> web.Response:
    resp = error_response(exc.code, exc.message, exc.status)
    if exc.status in (429, 503):
        resp.headers["Retry-After"] = "1"
    if exc.status in (408, 413) or isinstance(exc, BadBody):
        resp.force_close()  # the body was not read to its end: the connection cannot carry another request
    return resp


@web.middleware
async def errors_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except NodeError as exc:
        return _node_error_response(exc)
    except web.HTTPRequestEntityTooLarge as exc:
        limit = request.app[NODE].config.max_body_bytes
        resp = error_response("body_too_large", f"request body above the limit of {limit} bytes "
                              "(send fewer transactions per request)", 413)
        resp.force_close()
        return resp
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.reason if exc.status != 404 else f"no such endpoint: {request.method} {request.path}"
        allow = exc.headers.get("Allow") if exc.status == 405 else None
        if allow is not None:
            message = f"{request.method} is not allowed on {request.path}; allowed: {allow}"
        resp = error_response(code, message, exc.status)
        if allow is not None:
            resp.headers["Allow"] = allow  # RFC 9110: a 405 names the methods the resource supports
        return resp
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a bug: answer in the documented shape, log it
        request.app[NODE].log.exception("API handler failed: %s %s", request.method, request.path)
        return error_response("internal", f"internal error: {type(exc).__name__}", 500)


# -- helpers ------------------------------------------------------------------------------------

def _tx_hash(request: web.Request) -> bytes:
    text = request.match_info["hash"]
    if not _HEX32.fullmatch(text):
        raise BadRequest("transaction hash must be 64 hex digits", "bad_hash")
    return bytes.fromhex(text)


def _b64(value, where: str) -> bytes:
    if not isinstance(value, str):
        raise BadRequest(f"{where}: expected a base64 string", "bad_base64")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{where}: not valid base64", "bad_base64") from None


async def read_body(request: web.Request) -> bytes:
    """The request body, within `api_body_timeout_s` (408 `body_timeout` after it); a body
    that breaks off or has bad chunking is 400 `bad_body`. Extensions reading bodies use this."""
    limit = request.app[NODE].config.api_body_timeout_s
    waiting = getattr(request.protocol, "body_wait", None)  # node.api_limits.GuardedHandler
    if waiting is not None:
        waiting(True)
    try:
        async with asyncio.timeout(limit):
            return await request.read()
    except TimeoutError:
        raise BodyTimeout(f"request body not received within {limit} s", "body_timeout") from None
    except (HttpProcessingError, RequestPayloadError, ConnectionError) as exc:
        detail = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        raise BadBody(f"request body is malformed or incomplete: {detail}") from None
    finally:
        if waiting is not None:
            waiting(False)


async def read_json(request: web.Request):
    """The request body as JSON (`read_body`'s bounds); malformed, too deep or with
    integers beyond Python's digit limit is 400 `bad_json`. Extensions use this too."""
    raw = await read_body(request)
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", "bad_json") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply to be a transaction submission", "bad_json") from None
    except ValueError as exc:  # e.g. an integer literal above Python's 4,300-digit conversion limit
        raise BadRequest(f"request body is not acceptable JSON: {exc}", "bad_json") from None


def parse_address(text: str, what: str = "address") -> str:
    """A checksummed ``cx1…`` address, or a 64-hex-digit public key (answered as its address).
    Errors: ``bad_address`` (with what is wrong: a typo fails the checksum) or
    ``old_address_form`` (the message gives the checksummed form)."""
    address = account_address(text)
    if address is None:
        code, message = address_problem(text) or ("bad_address", "not an address")
        raise BadRequest(f"{what}: {message} (or give a 64-hex-digit public key)", code)
    return address


def _admission_json(a) -> dict:
    if a.error is not None:
        return a.error.to_json() | ({"hash": a.hash.hex()} if a.hash else {})
    out = {"hash": a.hash.hex(), "status": a.status}
    if a.height is not None:
        out["height"] = a.height
    return out


# -- handlers -------------------------------------------------------------------------------------

async def get_status(request: web.Request) -> web.Response:
    return json_response(request.app[NODE].status())


async def post_txs(request: web.Request) -> web.Response:
    node = request.app[NODE]
    body = await read_json(request)
    if not isinstance(body, dict) or (("tx" in body) == ("txs" in body)):
        raise BadRequest('body must be {"tx": "<base64>"} or {"txs": ["<base64>", ...]}', "bad_request")
    if "tx" in body:
        raw = _b64(body["tx"], "tx")
        (a,) = await node.submit_txs([raw])
        if a.error is not None:
            raise a.error
        return json_response(_admission_json(a), 202 if a.status == "pending" else 200)
    items = body["txs"]
    if not isinstance(items, list) or not items:
        raise BadRequest("txs: expected a non-empty list of base64 strings", "bad_request")
    if len(items) > node.config.max_batch_txs:
        raise NodeError(f"txs: {len(items)} transactions, at most {node.config.max_batch_txs} per request",
                        "batch_too_large", 413)
    raws: list[bytes | None] = []
    results: list[dict | None] = []
    for i, item in enumerate(items):
        try:
            raws.append(_b64(item, f"txs[{i}]"))
            results.append(None)
        except BadRequest as exc:
            raws.append(None)
            results.append(exc.to_json())
    admitted = iter(await node.submit_txs([r for r in raws if r is not None]))
    for i, r in enumerate(raws):
        if r is not None:
            results[i] = _admission_json(next(admitted))
    return json_response({"results": results}, 200)


def _committed_json(node, tx_hash: bytes) -> dict | None:
    rec = node.chain.get_tx(tx_hash)
    if rec is None:
        return None
    block = node.chain.get_block(rec.height)
    return {"hash": tx_hash.hex(), "status": "committed", "height": rec.height, "index": rec.index,
            "block_hash": block.hash.hex(), "tx": views.tx_view(rec.tx), "receipt": views.receipt_view(rec.receipt)}


def _wait_param(request: web.Request, cap: int) -> float:
    text = request.query.get("wait")
    if text is None:
        return 0.0
    if not _SECONDS.fullmatch(text):
        raise BadRequest("wait: expected a number of seconds, e.g. 5 or 2.5", "bad_wait")
    wait = float(text)
    if not 0 <= wait <= 3600:
        raise BadRequest("wait: must be between 0 and 3600 seconds", "bad_wait")
    return min(wait, cap)


async def get_tx(request: web.Request) -> web.Response:
    node = request.app[NODE]
    tx_hash = _tx_hash(request)
    wait = _wait_param(request, node.config.max_wait_s)
    found = _committed_json(node, tx_hash)
    if found is None and wait > 0:
        budget, ip = request.app[LONG_POLLS], request.remote or "local"
        if not budget.acquire(ip):
            raise TooManyWaits(f"every long-poll slot is taken (at most {budget.total_limit} on this node, "
                               f"{budget.per_ip_limit} per client address): retry shortly, or poll without ?wait")
        fut = node.runner.wait_committed(tx_hash)
        try:
            await asyncio.wait_for(asyncio.shield(fut), wait)
        except asyncio.TimeoutError:
            pass
        finally:
            node.runner.forget_waiter(tx_hash, fut)
            budget.release(ip)
        found = _committed_json(node, tx_hash)
    if found is not None:
        return json_response(found)
    stx = node.mempool.get(tx_hash)
    if stx is not None:
        return json_response({"hash": tx_hash.hex(), "status": "pending", "ready": node.mempool.is_ready(tx_hash),
                              "tx": views.tx_view(stx)})
    raise NotFound(f"transaction {tx_hash.hex()} is neither pending on this node nor committed", "unknown_tx")


async def get_tx_proof(request: web.Request) -> web.Response:
    node = request.app[NODE]
    tx_hash = _tx_hash(request)
    proof = node.chain.tx_proof(tx_hash)
    if proof is None:
        raise NotFound(f"transaction {tx_hash.hex()} is not committed", "unknown_tx")
    return json_response(views.proof_view(proof, tx_hash))


async def get_block(request: web.Request) -> web.Response:
    node = request.app[NODE]
    text = request.match_info["height"]
    if text == "latest":
        height = node.chain.height
    elif _HEIGHT.fullmatch(text):
        height = int(text)
    elif _HEX32.fullmatch(text):
        found = node.chain.height_of(bytes.fromhex(text))
        if found is None:
            raise NotFound(f"no block with hash {text}", "unknown_block")
        height = found
    else:
        raise BadRequest("block: expected a height, 'latest' or a 64-hex-digit block hash", "bad_height")
    if height == 0:
        raise NotFound("height 0 is the genesis state; blocks start at 1 (see /v1/status)", "unknown_block")
    block = node.chain.get_block(height) if height <= node.chain.height else None
    if block is None:
        base = node.chain.base_height
        if base and height < base:
            raise NotFound(f"no block at height {height}: this node started from a state-sync snapshot at height "
                           f"{base} and holds blocks {base}-{node.chain.height} only; ask a node that replayed "
                           "from genesis", "block_not_held")
        raise NotFound(f"no block at height {height}; the head is {node.chain.height}", "unknown_block")
    return json_response(views.block_view(block, node.chain.get_cert(height)))


async def get_account(request: web.Request) -> web.Response:
    node = request.app[NODE]
    address = parse_address(request.match_info["address"])
    state = node.chain.state()
    view = market_queries.account_view(state, address)  # balance, nonce, member, escrow
    member, nonce = view["member"], view["nonce"]
    pending = nonce
    if member is not None:
        pn = node.mempool.pending_nonce(member["key"])
        pending = nonce if pn is None else pn
    doc = {
        "address": address,
        "balance": view["balance"],
        "escrow_as_tenant": view["escrow_as_tenant"],
        "open_leases": view["open_leases"],
        "nonce": nonce,
        "pending_nonce": pending,
        "member": None if member is None else views.jsonable(member),
        "height": node.chain.height,
    }
    return json_response(proofs.with_proof(
        request, node.chain, doc, [accounts.bal_key(address), accounts.nonce_key(address), accounts.member_key(address)],
        ["balance", "nonce", "member"]))


async def get_validators(request: web.Request) -> web.Response:
    node = request.app[NODE]
    vals = node.chain.validators
    return json_response({"height": node.chain.height, "validators": [views.validator_view(v) for v in vals],
                          "quorum": quorum(len(vals))})


async def get_evidence(request: web.Request) -> web.Response:
    runner = request.app[NODE].runner
    return json_response({"count": runner.evidence_count, "evidence": list(runner.evidence)})


async def get_openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document(request.app))


async def get_health(request: web.Request) -> web.Response:
    # 503 while degraded, so a load balancer or probe takes the node out until it is fit;
    # /metrics is not here: it is on the separate metrics listener (node.metrics)
    verdict = request.app[NODE].health()
    return json_response(verdict, 200 if verdict["status"] == "ready" else 503)


ROUTES = [
    web.get("/v1/status", get_status),
    web.post("/v1/txs", post_txs),
    web.get("/v1/txs/{hash}", get_tx),
    web.get("/v1/txs/{hash}/proof", get_tx_proof),
    web.get("/v1/blocks/{height}", get_block),
    web.get("/v1/accounts/{address}", get_account),
    web.get("/v1/validators", get_validators),
    web.get("/v1/evidence", get_evidence),
    web.get("/v1/openapi.json", get_openapi),
    web.get("/health", get_health),
]


# Modules that, when installed, register API extensions on import (market endpoints …).
EXTENSION_MODULES: list[str] = ["node.market_api", "node.gov_api", "node.explorer_api", "node.snapshot_api",
                                   "node.light_api"]


def _load_extension_modules() -> None:
    for name in EXTENSION_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the module exists but something it imports does not
                raise


def make_app(node, extra_routes: Iterable[web.AbstractRouteDef] = ()) -> web.Application:
    _load_extension_modules()
    app = web.Application(client_max_size=node.config.max_body_bytes, middlewares=[errors_middleware])
    app[NODE] = node
    app[LONG_POLLS] = LongPollBudget(node.config.api_max_long_polls, node.config.api_max_long_polls_per_ip)
    add_routes(app, ROUTES)
    add_routes(app, extra_routes)
    for ext in _EXTENSIONS:
        ext(app, node)
    return app


async def start_api(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `app` with the node's connection limits and deadlines (`node.api_limits`).
    Port 0 picks a free port; returns (runner, port)."""
    node = app[NODE]
    return await serve(app, host, port, ApiLimits.from_config(node.config), node.log)
