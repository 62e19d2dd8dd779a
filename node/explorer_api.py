"""Serves the explorer page (`node/explorer/static/`) at GET /explorer/ (loaded by `node.api`
through EXTENSION_MODULES, registered with `register_extension` like `node.market_api`).

    GET /explorer         -> 308 to /explorer/
    GET /explorer/        index.html
    GET /explorer/{name}  one of the files in static/ (a fixed set, read when the app is built)

The page renders values an attacker controls (memos, listing regions, claims, org names), so
every explorer response carries a strict Content-Security-Policy: scripts and styles only from
this origin (no inline script, no eval), fetches only to this origin, no frames, no plugins,
no form posts. The page itself never puts API text into HTML (it builds DOM nodes with text).
"""

from __future__ import annotations

import re

from aiohttp import web

from node import api
from node.explorer import STATIC_DIR

PREFIX = "/explorer"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
_NAME = re.compile(r"[a-z0-9_-]{1,64}\.[a-z]{2,4}")
_FILES: web.AppKey = web.AppKey("cxl_explorer_files", dict)


def load_files() -> dict[str, tuple[bytes, str]]:
    """{file name: (bytes, content type)} of static/, flat, only the known file kinds."""
    out = {}
    for path in sorted(STATIC_DIR.iterdir()):
        ctype = CONTENT_TYPES.get(path.suffix)
        if path.is_file() and ctype and _NAME.fullmatch(path.name):
            out[path.name] = (path.read_bytes(), ctype)
    return out


def _file_response(request: web.Request, name: str) -> web.Response:
    found = request.app[_FILES].get(name)
    if found is None:
        resp = api.error_response("not_found", f"no explorer file {name!r}; open {PREFIX}/", 404)
        resp.headers.update(SECURITY_HEADERS)
        return resp
    body, ctype = found
    return web.Response(body=body, headers={"Content-Type": ctype, **SECURITY_HEADERS})


async def get_root(request: web.Request) -> web.Response:
    raise web.HTTPPermanentRedirect(PREFIX + "/", headers=SECURITY_HEADERS)


async def get_index(request: web.Request) -> web.Response:
    return _file_response(request, "index.html")


async def get_file(request: web.Request) -> web.Response:
    return _file_response(request, request.match_info["name"])


ROUTES = [
    web.get(PREFIX, get_root),
    web.get(PREFIX + "/", get_index),
    web.get(PREFIX + "/{name}", get_file),
]


@api.register_extension
def install(app: web.Application, node) -> None:
    app[_FILES] = load_files()
    api.add_routes(app, ROUTES)
