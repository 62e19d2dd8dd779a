"""Transaction signature checks spread over all cores, ahead of block validation.

Replay hands each block's raw transactions to a pool; the pool answers with the hashes
of those whose signature verifies, and those hashes go to `Chain.validate_block` as
`verified=`. A transaction that does not verify is simply left out of the set, so
validation checks it again on its own and fails with the ledger's `bad_signature`: the
pool can only save work, never approve something the ledger would refuse.

A process pool is the default: PyNaCl's verify holds the GIL for part of each call
(argument conversion, object creation), so threads scale poorly; see docs/audit.md for
the measurements.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor

import hashlib

import msgpack
import nacl.bindings
import nacl.exceptions

from ledger.crypto import PUBLIC_KEY_SIZE, SIGNATURE_SIZE
from ledger.errors import EncodingError
from ledger.tx import SIGNED_TAIL, decode_tx, tx_signing_prefix

HASH = 32
MIN_CHUNK = 256  # transactions per task: below this, pool overhead outweighs the work
_SIG_TAIL = SIGNED_TAIL


def fast_signing_bytes(raw: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(signed message, signature, sender key) straight from a signed tx's bytes, or None.

    A signed tx is ``encode([tx_array, signature])``. When those bytes are canonical (block
    validation rejects any that are not, with `decode_tx`), ``encode(tx_array)`` is exactly
    ``raw[1:-66]``, so the signed message is the domain prefix plus that slice: no decode
    and re-encode of the payload. Anything of another shape returns None (slow path).
    """
    if len(raw) < 1 + _SIG_TAIL or raw[0] != 0x92 or raw[-_SIG_TAIL] != 0xC4 or raw[-_SIG_TAIL + 1] != SIGNATURE_SIZE:
        return None
    try:
        wire = msgpack.unpackb(raw, raw=False)
        tx, sig = wire
        chain_id, sender = tx[0], tx[1]
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
    if not (isinstance(chain_id, str) and isinstance(sender, bytes) and len(sender) == PUBLIC_KEY_SIZE
            and isinstance(sig, bytes) and sig == raw[-SIGNATURE_SIZE:]):
        return None
    try:
        prefix = tx_signing_prefix(chain_id)
    except EncodingError:
        return None
    return prefix + raw[1:-_SIG_TAIL], sig, sender


def verify_chunk(raws: list[bytes], max_tx_bytes: int) -> bytes:
    """Hashes (concatenated, 32 bytes each) of the transactions whose signature verifies.

    The same Ed25519 check as `SignedTx.verify_signature` (PyNaCl's `VerifyKey.verify` is
    `crypto_sign_open(signature + message, key)`), on the message `fast_signing_bytes`
    cuts out of the raw bytes; other shapes go through `decode_tx` and `verify_signature`.
    Undecodable transactions are skipped: block validation reports them with its own code.
    """
    out = []
    sign_open = nacl.bindings.crypto_sign_open
    for raw in raws:
        if len(raw) > max_tx_bytes:
            continue
        fast = fast_signing_bytes(raw)
        if fast is not None:
            message, sig, sender = fast
            try:
                sign_open(sig + message, sender)
            except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError, TypeError):
                continue
            out.append(hashlib.sha256(raw).digest())
            continue
        try:
            stx = decode_tx(raw, max_tx_bytes)
        except EncodingError:
            continue
        if stx.verify_signature():
            out.append(stx.hash)
    return b"".join(out)


def _warm() -> int:
    return os.getpid()


def _lower_priority(nice: int) -> None:
    # block execution is the serial critical path; signature workers take what is left
    try:
        os.nice(nice)
    except OSError:  # pragma: no cover - not permitted: run at normal priority
        pass


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


class _Done:
    """A finished future-alike for the inline (no pool) path."""

    def __init__(self, value: bytes):
        self._value = value

    def result(self) -> bytes:
        return self._value


class Pending:
    """The signature verdicts of one block, possibly split over several tasks."""

    def __init__(self, parts: list):
        self._parts = parts

    def result(self) -> frozenset[bytes]:
        hashes: set[bytes] = set()
        for part in self._parts:
            try:
                blob = part.result()
            except Exception:  # noqa: BLE001 - a broken pool (a worker killed…) only costs speed:
                continue       # validation then checks these signatures itself
            hashes.update(blob[i : i + HASH] for i in range(0, len(blob), HASH))
        return frozenset(hashes)


class SignatureChecker:
    """`submit(raw_txs) -> Pending` whose `result()` is the set of verified tx hashes.

    kind: "process" (default), "thread", or "inline" (no pool; also used when workers=1).
    """

    def __init__(self, workers: int | None = None, kind: str = "process", max_tx_bytes: int = 64 * 1024,
                 nice: int = 0):
        self.workers = default_workers() if workers is None else max(1, workers)
        self.kind = "inline" if self.workers == 1 else kind
        if self.kind not in ("process", "thread", "inline"):
            raise ValueError(f"unknown pool kind {kind!r}: use process, thread or inline")
        self.max_tx_bytes = max_tx_bytes
        self._pool: Executor | None = None
        if self.kind == "process":
            # fork: workers start in milliseconds and need no importable __main__. They are
            # all started here, before replay starts any thread of its own (HTTP fetchers),
            # and they run only decode + verify, which take no lock a thread could hold.
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_lower_priority if nice else None,
                                             initargs=(nice,) if nice else ())
            for f in [self._pool.submit(_warm) for _ in range(self.workers)]:
                f.result()
        elif self.kind == "thread":
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="cxl-sigcheck")

    def submit(self, raws: list[bytes] | tuple[bytes, ...]) -> Pending:
        raws = list(raws)
        if not raws:
            return Pending([])
        if self._pool is None:
            return Pending([_Done(verify_chunk(raws, self.max_tx_bytes))])
        parts = max(1, min(self.workers, len(raws) // MIN_CHUNK))
        size = -(-len(raws) // parts)
        futures: list[Future] = [
            self._pool.submit(verify_chunk, raws[i : i + size], self.max_tx_bytes) for i in range(0, len(raws), size)
        ]
        return Pending(futures)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "SignatureChecker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
