"""State-sync snapshots on the client API (issue 11 item 4), for `cxl node start --state-sync`.

    GET /v1/snapshot                          the latest snapshot: its height (the head), the
                                              certified block at it, its state root, chunk count
                                              and the SHA-256 of each chunk
    GET /v1/snapshot/{height}/chunks/{i}      chunk i (application/octet-stream): the canonical
                                              encoding of [height, i, [[key, value], ...]], the
                                              state-tree leaves at that height in key-hash order
                                              (ledger/snapshot.py; at most 10 000 leaves / 4 MiB)

A syncing node trusts none of it until the restored tree's root equals the state root of a
block header carrying a valid commit certificate. Chunks are cut once per height (in a worker
thread) and kept for the two latest snapshot heights; any height whose state tree is still
kept (`state_versions_kept`) can be served.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ledger import snapshot, statetree
from ledger.encoding import sha256
from node import api, views
from node.errors import BadRequest, NotFound
from node.openapi import add_openapi_paths

_CACHE: web.AppKey = web.AppKey("cxl_snapshot_chunks", dict)
_LOCK: web.AppKey = web.AppKey("cxl_snapshot_lock", asyncio.Lock)
KEEP_HEIGHTS = 2


def cut_chunks(store, height: int) -> list[bytes]:
    leaves = statetree.iter_leaves(store, height)
    return [snapshot.encode_chunk(height, i, part) for i, part in enumerate(snapshot.chunk_leaves(leaves))]


async def chunks_at(request: web.Request, height: int) -> list[bytes]:
    node, cache = request.app[api.NODE], request.app[_CACHE]
    async with request.app[_LOCK]:
        if height not in cache:
            if height < 1 or height > node.chain.height or statetree.root_ref(node.chain.store, height) is None:
                raise NotFound(f"no snapshot at height {height}: the head is {node.chain.height} and only recent "
                               "state trees are kept; ask GET /v1/snapshot", "unknown_snapshot")
            try:
                cache[height] = await asyncio.to_thread(cut_chunks, node.chain.store, height)
            except statetree.StateTreeError as exc:  # pruned while cutting
                raise NotFound(f"no snapshot at height {height}: {exc}", "unknown_snapshot") from exc
            for old in sorted(cache)[:-KEEP_HEIGHTS]:
                del cache[old]
        return cache[height]


async def get_snapshot(request: web.Request) -> web.Response:
    node = request.app[api.NODE]
    height = node.chain.height
    if height == 0:
        raise NotFound("no snapshot yet: no block is committed (a new node replays from genesis)", "no_snapshot")
    block, cert = node.chain.get_block(height), node.chain.get_cert(height)
    chunks = await chunks_at(request, height)
    return api.json_response({
        "height": height,
        "state_root": block.header.state_root.hex(),
        "block_hash": block.hash.hex(),
        "chunks": len(chunks),
        "chunk_hashes": [sha256(c).hex() for c in chunks],
        "block": views.b64(block.encode()),
        "certificate_raw": views.b64(cert.encode()),
        "certificate": views.certificate_view(cert),
    })


def _index(text: str, what: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        raise BadRequest(f"{what}: expected a non-negative decimal integer", "bad_request")
    return int(text)


async def get_chunk(request: web.Request) -> web.Response:
    height = _index(request.match_info["height"], "height")
    i = _index(request.match_info["i"], "chunk index")
    chunks = await chunks_at(request, height)
    if i >= len(chunks):
        raise NotFound(f"the snapshot at height {height} has {len(chunks)} chunks (0-{len(chunks) - 1})",
                       "unknown_chunk")
    return web.Response(body=chunks[i], content_type="application/octet-stream")


ROUTES = [
    web.get("/v1/snapshot", get_snapshot),
    web.get("/v1/snapshot/{height}/chunks/{i}", get_chunk),
]


_ERR = {"$ref": "#/components/schemas/Error"}
OPENAPI_PATHS = {
    "/v1/snapshot": {"get": {
        "summary": "The latest state-sync snapshot: certified block, state root, chunk count and hashes",
        "responses": {
            "200": {"description": "snapshot manifest", "content": {"application/json": {"schema": {
                "type": "object", "properties": {
                    "height": {"type": "integer"}, "state_root": {"type": "string"}, "block_hash": {"type": "string"},
                    "chunks": {"type": "integer"}, "chunk_hashes": {"type": "array", "items": {"type": "string"}},
                    "block": {"type": "string", "description": "base64 of the raw block"},
                    "certificate_raw": {"type": "string", "description": "base64 of the commit certificate"},
                    "certificate": {"type": "object"}}}}}},
            "404": {"description": "no block committed yet (no_snapshot)",
                    "content": {"application/json": {"schema": _ERR}}}}}},
    "/v1/snapshot/{height}/chunks/{i}": {"get": {
        "summary": "Chunk i of the snapshot at height: canonical [height, i, [[key, value], ...]]",
        "parameters": [{"name": "height", "in": "path", "required": True, "schema": {"type": "integer"}},
                       {"name": "i", "in": "path", "required": True, "schema": {"type": "integer"}}],
        "responses": {
            "200": {"description": "the chunk's bytes", "content": {"application/octet-stream": {}}},
            "400": {"description": "bad height or index", "content": {"application/json": {"schema": _ERR}}},
            "404": {"description": "unknown_snapshot or unknown_chunk",
                    "content": {"application/json": {"schema": _ERR}}}}}},
}


@api.register_extension
def install(app: web.Application, node) -> None:
    app[_CACHE] = {}
    app[_LOCK] = asyncio.Lock()
    api.add_routes(app, ROUTES)
    add_openapi_paths(app, OPENAPI_PATHS)
