"""Where replay reads a chain from: a node's LevelDB (read-only) or a node's HTTP API.

A source yields, for each height, the raw block and the raw stored certificate exactly
as the node holds them (bytes, undecoded), so that replay judges the node's own bytes.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

from ledger.chain import META_GENESIS, META_HEAD, META_HEAD_VALIDATORS, h8
from ledger.encoding import decode
from ledger.errors import EncodingError, StoreError
from ledger.store.base import PREFIX_BLOCK, PREFIX_CERT, Store


class SourceError(Exception):
    """The chain could not be read at all (not: the chain is wrong). `code` is stable."""

    def __init__(self, message: str, code: str = "source_error"):
        super().__init__(message)
        self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0])


class BlockSource:
    """The interface replay needs. `fetch` yields (height, raw block | None, raw cert | None)."""

    description = "source"
    store: Store | None = None  # set when the source is a node's own store

    def head_height(self) -> int:
        raise NotImplementedError

    def genesis_hash(self) -> bytes | None:
        """The genesis hash the source says it runs, when it says so."""
        return None

    def head_meta(self) -> dict | None:
        """The source's own head pointer: {height, block_hash, state_root, time_ms, validators?}."""
        return None

    def fetch(self, start: int, stop: int) -> Iterator[tuple[int, bytes | None, bytes | None]]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class StoreSource(BlockSource):
    """Blocks and certificates straight from a Store (a node's LevelDB, or a test's MemoryStore)."""

    def __init__(self, store: Store, description: str = "store", owns: bool = False):
        self.store = store
        self.description = description
        self._owns = owns

    def _meta(self):
        raw = self.store.get(META_HEAD)
        if raw is None:
            raise SourceError(f"{self.description} holds no chain (no head record); is it a cxl data directory?",
                              "not_a_chain")
        try:
            return decode(raw)
        except EncodingError as exc:
            raise SourceError(f"{self.description}: head record is corrupt: {exc}", "corrupt_meta") from exc

    def head_height(self) -> int:
        meta = self._meta()
        if not (isinstance(meta, list) and len(meta) == 4 and isinstance(meta[0], int)):
            raise SourceError(f"{self.description}: head record has the wrong shape", "corrupt_meta")
        return meta[0]

    def genesis_hash(self) -> bytes | None:
        return self.store.get(META_GENESIS)

    def head_meta(self) -> dict | None:
        meta = self._meta()
        out = {"height": meta[0], "block_hash": meta[1], "state_root": meta[2], "time_ms": meta[3]}
        raw = self.store.get(META_HEAD_VALIDATORS)
        if raw is not None:
            try:
                out["validators"] = decode(raw)
            except EncodingError:
                out["validators"] = raw  # compared as bytes: will not match
        return out

    def fetch(self, start: int, stop: int):
        for h in range(start, stop):
            yield h, self.store.get(PREFIX_BLOCK + h8(h)), self.store.get(PREFIX_CERT + h8(h))

    def close(self) -> None:
        if self._owns:
            self.store.close()


def open_home(home: str | Path) -> StoreSource:
    """Open a node's database read-only: HOME/data (or HOME itself if it is the database).

    LevelDB allows one process per database; a running node holds the lock.
    """
    from ledger.store.leveldb import LevelDBStore  # plyvel only when a data directory is audited

    home = Path(home)
    candidates = [home / "data", home]
    path = next((p for p in candidates if (p / "CURRENT").is_file()), None)
    if path is None:
        raise SourceError(
            f"no cxl database in {home} (looked for {home / 'data'}/CURRENT); pass the node's --home directory",
            "no_database",
        )
    try:
        store = LevelDBStore(path, create=False, read_only=True)
    except StoreError as exc:
        text = str(exc)
        if "lock" in text.lower() or getattr(exc, "code", "") == "store_locked":
            raise SourceError(
                f"the database at {path} is locked by another process (a running node?). "
                f"Stop the node first, or copy {path} elsewhere and pass that copy with --home, "
                "or audit the running node over its API with --node URL.",
                "store_locked",
            ) from exc
        raise SourceError(f"cannot open {path}: {text}", "store_error") from exc
    return StoreSource(store, description=f"LevelDB {path}", owns=True)


# --- HTTP ------------------------------------------------------------------------------


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, TypeError) as exc:
        raise EncodingError(f"{what}: not base64") from exc


class HttpClient:
    """A tiny keep-alive JSON client, one connection per thread (stdlib only)."""

    def __init__(self, base_url: str, timeout: float = 30.0):
        parts = urlsplit(base_url if "://" in base_url else "http://" + base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SourceError(f"{base_url!r} is not a node URL like http://127.0.0.1:26701", "bad_url")
        self.base_url = f"{parts.scheme}://{parts.netloc}"
        self._scheme, self._netloc, self._prefix = parts.scheme, parts.netloc, parts.path.rstrip("/")
        self.timeout = timeout
        self._local = threading.local()

    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            conn = self._local.conn = cls(self._netloc, timeout=self.timeout)
        return conn

    def get_json(self, path: str) -> tuple[int, dict | None]:
        """(status, parsed body). Retries once on a dropped keep-alive connection."""
        for attempt in (1, 2):
            conn = self._conn()
            try:
                conn.request("GET", self._prefix + path, headers={"Accept": "application/json"})
                resp = conn.getresponse()
                body = resp.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise SourceError(f"cannot reach {self.base_url}{path}: {exc}", "unreachable") from exc
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        return resp.status, data


class HttpSource(BlockSource):
    """Blocks from `GET /v1/blocks/{h}` ({block, certificate_raw} base64), head from `GET /v1/status`.

    Requests run `parallel` at a time, in order of height, a bounded window ahead of replay.
    """

    def __init__(self, url: str, parallel: int = 8, timeout: float = 30.0):
        self.client = HttpClient(url, timeout)
        self.description = f"node {self.client.base_url}"
        self.parallel = max(1, parallel)
        self._status: dict | None = None

    def status(self) -> dict:
        code, data = self.client.get_json("/v1/status")
        if code != 200 or not isinstance(data, dict) or not isinstance(data.get("height"), int):
            raise SourceError(f"{self.description}: GET /v1/status answered {code} without a height", "bad_status")
        self._status = data
        return data

    def head_height(self) -> int:
        return self.status()["height"]

    def genesis_hash(self) -> bytes | None:
        value = (self._status or self.status()).get("genesis_hash")
        try:
            return bytes.fromhex(value) if isinstance(value, str) else None
        except ValueError:
            return None

    def head_meta(self) -> dict | None:
        """The head as `/v1/status` reported it when replay began (the node may move on)."""
        st = self._status or self.status()
        meta = {"height": st["height"]}
        for ours, theirs in (("block_hash", "head_hash"), ("state_root", "state_root")):
            try:
                meta[ours] = bytes.fromhex(st[theirs])
            except (KeyError, TypeError, ValueError):
                pass
        if isinstance(st.get("time_ms"), int):
            meta["time_ms"] = st["time_ms"]
        return meta

    def get_block(self, height: int) -> tuple[bytes | None, bytes | None]:
        code, data = self.client.get_json(f"/v1/blocks/{height}")
        if code == 404:
            return None, None
        if code != 200 or not isinstance(data, dict):
            raise SourceError(f"{self.description}: GET /v1/blocks/{height} answered {code}", "bad_response")
        block = data.get("block")
        cert = data.get("certificate_raw")
        try:
            raw_block = _b64(block, "block") if isinstance(block, str) else None
            raw_cert = _b64(cert, "certificate_raw") if isinstance(cert, str) else None
        except EncodingError as exc:
            # hand replay something undecodable so it names the height
            raise SourceError(f"{self.description}: block {height}: {exc}", "bad_response") from exc
        return raw_block, raw_cert

    def fetch(self, start: int, stop: int):
        window = self.parallel * 4
        with ThreadPoolExecutor(self.parallel, thread_name_prefix="cxl-fetch") as pool:
            pending: deque = deque()
            nxt = start
            while pending or nxt < stop:
                while nxt < stop and len(pending) < window:
                    pending.append((nxt, pool.submit(self.get_block, nxt)))
                    nxt += 1
                h, fut = pending.popleft()
                raw_block, raw_cert = fut.result()
                yield h, raw_block, raw_cert
