"""A small synchronous client for the node's JSON API (stdlib urllib, no extra dependency).

Every failure comes out as a `NodeError` carrying the API's error code and message and
the HTTP status, so commands can print something a person can act on:

* `NodeUnreachable` (status 0): nothing answered at the URL (refused, DNS, timeout);
* `NodeError` with the API's ``{"error": {"code", "message"}}`` for any 4xx/5xx;
* `MalformedAnswer` (code ``malformed_answer``): the node answered 2xx with something that
  is not a JSON object (every answer of the API is one), e.g. a hostile or broken node;
  reading a field the answer lacks (``answer["items"]``) raises `MissingField`, a
  `MalformedAnswer` that is also a `KeyError`, so commands need no checks of their own.

The default node is the first validator of a localnet and a node home with default
settings (`node.config.NodeConfig.api_port`): API port 26700+n for node n = 1, 2, … (see
`genesis.localnet`), overridable with ``--node`` or the ``CXL_NODE`` variable.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DEFAULT_NODE_URL = "http://127.0.0.1:26701"
NODE_ENV = "CXL_NODE"
DEFAULT_TIMEOUT = 10.0


def default_node_url() -> str:
    return os.environ.get(NODE_ENV) or DEFAULT_NODE_URL


class NodeError(Exception):
    """The node answered with an error, or did not answer at all (`NodeUnreachable`)."""

    def __init__(self, code: str, message: str, status: int = 0, url: str = ""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.url = url

    def __str__(self) -> str:
        where = f" (HTTP {self.status})" if self.status else ""
        return f"{self.message} [{self.code}]{where}"


class NodeUnreachable(NodeError):
    def __init__(self, url: str, reason: str):
        super().__init__(
            "unreachable",
            f"cannot reach a node at {url} ({reason}): is the node running at {url}? "
            "start it with `cxl node start --home DIR`, or point --node / CXL_NODE at a running node",
            0,
            url,
        )

    def __str__(self) -> str:
        return self.message


class MalformedAnswer(NodeError):
    def __init__(self, url: str, what: str, detail: str, status: int = 200):
        super().__init__("malformed_answer", f"the node at {url} sent a malformed answer to {what}: {detail}",
                         status, url)


class MissingField(MalformedAnswer, KeyError):
    def __str__(self) -> str:
        return NodeError.__str__(self)


def _answer_type(url: str, what: str) -> type[dict]:
    class Answer(dict):
        """A JSON object from the node; a missing field is the node's fault, said as such."""

        def __missing__(self, key):
            raise MissingField(url, what, f"field {key!r} is missing")

    return Answer


class NodeClient:
    def __init__(self, url: str | None = None, timeout: float = DEFAULT_TIMEOUT):
        url = (url or default_node_url()).strip()
        if "://" not in url:
            url = "http://" + url
        self.url = url.rstrip("/")
        self.timeout = timeout

    # -- transport ---------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, *, params: dict | None = None,
                timeout: float | None = None) -> Any:
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        data = None
        headers = {"Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ConnectionRefusedError):
                reason = "connection refused"
            elif isinstance(reason, socket.timeout):
                reason = "timed out"
            raise NodeUnreachable(self.url, str(reason)) from None
        except (socket.timeout, TimeoutError):
            raise NodeUnreachable(self.url, f"no answer within {timeout or self.timeout:g}s") from None
        except ConnectionError as exc:
            raise NodeUnreachable(self.url, exc.strerror or type(exc).__name__) from None
        what = f"{method} {path}"
        if not raw:
            return {}
        try:
            data = json.loads(raw, object_hook=_answer_type(self.url, what))
        except (ValueError, RecursionError):
            raise MalformedAnswer(self.url, what, "not JSON") from None
        if not isinstance(data, dict):
            raise MalformedAnswer(self.url, what, f"expected a JSON object, got {type(data).__name__}")
        return data

    def _http_error(self, exc: urllib.error.HTTPError) -> NodeError:
        raw = b""
        try:
            raw = exc.read()
        except OSError:
            pass
        try:
            err = json.loads(raw)["error"]
            return NodeError(str(err.get("code", f"http_{exc.code}")), str(err.get("message", exc.reason)),
                             exc.code, self.url)
        except (ValueError, KeyError, TypeError, AttributeError):
            text = raw.decode(errors="replace").strip()[:200]
            return NodeError(f"http_{exc.code}", f"{exc.reason}{': ' + text if text else ''}", exc.code, self.url)

    def get(self, path: str, params: dict | None = None, timeout: float | None = None) -> Any:
        return self.request("GET", path, params=params, timeout=timeout)

    def post(self, path: str, body: Any, timeout: float | None = None) -> Any:
        return self.request("POST", path, body, timeout=timeout)

    # -- API ---------------------------------------------------------------------------
    def status(self) -> dict:
        return self.get("/v1/status")

    def account(self, address: str) -> dict:
        return self.get(f"/v1/accounts/{urllib.parse.quote(address)}")

    def submit(self, raw_b64: str) -> dict:
        """POST a signed transaction (base64); 202 {"hash", "status": "pending"}."""
        return self.post("/v1/txs", {"tx": raw_b64})

    def tx(self, tx_hash: str, wait: float | None = None) -> dict:
        """One transaction; with `wait`, the node holds the request up to `wait` s for its commit."""
        if wait:
            wait_s = max(1, int(wait))
            try:
                return self.get(f"/v1/txs/{tx_hash}", params={"wait": wait_s}, timeout=wait_s + self.timeout)
            except NodeError as exc:
                if exc.code != "too_many_waits":
                    raise
            # every long-poll slot of the node is taken: pause as its Retry-After says, then ask plainly
            time.sleep(1.0)
        return self.get(f"/v1/txs/{tx_hash}")

    def tx_proof(self, tx_hash: str) -> dict:
        return self.get(f"/v1/txs/{tx_hash}/proof")

    def block(self, height: int | str = "latest") -> dict:
        return self.get(f"/v1/blocks/{height}")

    def validators(self) -> dict:
        return self.get("/v1/validators")
