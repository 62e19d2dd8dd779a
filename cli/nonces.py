"""Local nonce management: parallel `cxl` calls with one key get distinct nonces.

Without it, two `cxl tx …` processes with one key both ask the node for the account's
pending nonce, both get N, and the second send fails with ``nonce_conflict``. So a send
whose nonce is not given with ``--nonce``:

1. takes an exclusive lock for the sending address (``fcntl.flock`` on
   ``$CXL_NONCE_DIR/<address>.lock``, default ``~/.cxl/nonces/``), waiting for a holder;
2. picks the nonce: the node's ``pending_nonce`` (which counts the account's transactions
   already in its mempool), or, if larger, the next nonce this machine recorded after its
   last accepted send with the key on this chain within `CACHE_TTL_MS` — that covers calls
   sent to different nodes before gossip has carried the earlier transaction across;
3. holds the lock through the dry run and the post, and once the node has accepted the
   transaction records nonce + 1 and releases the lock (waiting for the commit is done
   without it, so parallel calls overlap their waits).

A send that is refused records nothing, so no nonce is skipped. The one way the cache can be
ahead of the chain (an accepted transaction later dropped from every mempool) shows up as
the dry run's ``nonce_gap``; the cache entry is then deleted, so the next call uses the
node's nonce. The lock is advisory and local: processes on other machines are not covered.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from pathlib import Path

from cli.common import CliError

NONCE_DIR_ENV = "CXL_NONCE_DIR"
CACHE_TTL_MS = 60_000      # a recorded nonce older than this is not trusted over the node's answer
LOCK_WAIT_S = 120.0        # a holder posts one transaction: far less than this unless it hangs
_POLL_S = 0.02


def nonce_dir() -> Path:
    return Path(os.environ.get(NONCE_DIR_ENV) or Path.home() / ".cxl" / "nonces")


class NonceReservation:
    """The lock and cache entry of one sending address; use as a context manager."""

    def __init__(self, address: str, chain_id: str, directory: Path | None = None, wait_s: float = LOCK_WAIT_S):
        self.address, self.chain_id, self.wait_s = address, chain_id, wait_s
        self.dir = directory or nonce_dir()
        self.lock_path = self.dir / f"{address}.lock"
        self.cache_path = self.dir / f"{address}.json"
        self.from_cache = False
        self._fd: int | None = None

    # -- lock ----------------------------------------------------------------------------
    def __enter__(self) -> "NonceReservation":
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise CliError(f"cannot open the nonce lock {self.lock_path}: {exc.strerror}; set ${NONCE_DIR_ENV} "
                           "to a writable directory, or give --nonce") from None
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() > deadline:
                self.release()
                raise CliError(f"another cxl process has held the nonce lock of {self.address} for "
                               f"{self.wait_s:g}s ({self.lock_path}); wait for it, or give --nonce")
            time.sleep(_POLL_S)

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        """Unlock (idempotent): called once the node accepted the transaction, and on exit."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    # -- cache ---------------------------------------------------------------------------
    def choose(self, node_pending: int, now_ms: int | None = None) -> int:
        """The nonce to sign with: the node's pending nonce unless a fresh local record is ahead."""
        cached = self._cached(now_ms)
        self.from_cache = cached is not None and cached > node_pending
        return cached if self.from_cache else node_pending

    def accepted(self, nonce: int, now_ms: int | None = None) -> None:
        """The node accepted the transaction with `nonce`: record the next one, then unlock."""
        entry = {"chain_id": self.chain_id, "next_nonce": nonce + 1, "at_ms": _now_ms() if now_ms is None else now_ms}
        tmp = self.cache_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(entry))
            os.replace(tmp, self.cache_path)  # atomic: a reader never sees half a file
        except OSError:
            pass  # the cache only saves a race across nodes; the transaction is sent either way
        self.release()

    def forget(self) -> None:
        """Drop the cache entry (it proved to be ahead of the chain)."""
        try:
            self.cache_path.unlink()
        except FileNotFoundError:
            pass

    def _cached(self, now_ms: int | None) -> int | None:
        try:
            entry = json.loads(self.cache_path.read_text())
        except (OSError, ValueError):
            return None
        now = _now_ms() if now_ms is None else now_ms
        if not isinstance(entry, dict) or entry.get("chain_id") != self.chain_id:
            return None
        nonce, at = entry.get("next_nonce"), entry.get("at_ms")
        if not isinstance(nonce, int) or not isinstance(at, int) or not 0 <= now - at <= CACHE_TTL_MS:
            return None
        return nonce


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
