"""State sync, client side: fetch the latest snapshot from one or more peers' client APIs
(node/snapshot_api.py), verify it and rebuild the state tree (ledger/snapshot.py).

Trust: the snapshot's block must carry a commit certificate signed by a quorum of
`validators` (the caller passes the set it trusts to decide that height: the genesis set,
so this is sound only while the validator set has not changed since genesis; there is no
API yet to follow validator-set changes from genesis). Its header's state root then anchors
everything else: each chunk must hash to the manifest's chunk hash (so a lying peer is caught
per chunk and another is asked), keep the key-hash order, and the rebuilt root must equal the
certified state root, or the sync is refused with `state_root_mismatch`.

Not yet wired into `cxl node start` (see the report of helper F): `sync_snapshot` returns
the verified block, certificate and restored tree; writing them into a data directory is
the remaining step.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import aiohttp

from ledger import snapshot
from ledger.block import Block, Certificate
from ledger.encoding import decode, sha256
from ledger.errors import LedgerError
from ledger.snapshot import Restored, SnapshotError
from ledger.store.base import Store

FETCH_TIMEOUT_S = 60


class StateSyncError(SnapshotError):
    code = "state_sync_failed"


@dataclass(frozen=True, slots=True)
class Synced:
    block: Block
    cert: Certificate
    restored: Restored
    source: str


async def _get_json(session: aiohttp.ClientSession, url: str) -> dict:
    async with session.get(url) as r:
        if r.status != 200:
            raise StateSyncError(f"{url}: HTTP {r.status}: {(await r.text())[:200]}")
        return await r.json()


async def _get_bytes(session: aiohttp.ClientSession, url: str) -> bytes:
    async with session.get(url) as r:
        if r.status != 200:
            raise StateSyncError(f"{url}: HTTP {r.status}")
        return await r.read()


def verify_manifest(doc: dict, chain_id: str, validators: list[bytes]) -> tuple[Block, Certificate, list[bytes]]:
    """The certified block of a GET /v1/snapshot answer, checked; and the chunk hashes."""
    try:
        block = Block.decode(base64.b64decode(doc["block"], validate=True))
        cert = Certificate.from_wire(decode(base64.b64decode(doc["certificate_raw"], validate=True)))
        hashes = [bytes.fromhex(h) for h in doc["chunk_hashes"]]
        height, count = doc["height"], doc["chunks"]
    except (KeyError, TypeError, ValueError, LedgerError) as exc:
        raise StateSyncError(f"not a snapshot manifest: {exc}", "bad_snapshot") from exc
    if block.height != height or cert.height != height or cert.block_hash != block.hash:
        raise StateSyncError(f"the certificate is not for the snapshot's block at height {height}", "bad_snapshot")
    if len(hashes) != count or count < 1:
        raise StateSyncError("the manifest's chunk count and chunk hashes disagree", "bad_snapshot")
    try:
        cert.verify(chain_id, validators)
    except LedgerError as exc:
        raise StateSyncError(f"the snapshot's block is not certified by the trusted validator set: {exc}",
                             "bad_snapshot_certificate") from exc
    return block, cert, hashes


async def sync_snapshot(urls: list[str], chain_id: str, validators: list[bytes], store: Store) -> Synced:
    """Fetch and verify the latest snapshot of the first peer that has a valid one; each
    chunk from the first peer (starting with that one) whose copy checks out."""
    if not urls:
        raise StateSyncError("no state-sync peers given")
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
    problems: list[str] = []
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for source in urls:
            try:
                block, cert, hashes = verify_manifest(await _get_json(session, source + "/v1/snapshot"),
                                                      chain_id, validators)
            except (StateSyncError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                problems.append(f"{source}: {exc}")
                continue
            height = block.height
            leaves: dict[bytes, bytes] = {}
            after = None
            for i, want in enumerate(hashes):
                part = None
                for peer in [source] + [u for u in urls if u != source]:
                    try:
                        raw = await _get_bytes(session, f"{peer}/v1/snapshot/{height}/chunks/{i}")
                    except (StateSyncError, aiohttp.ClientError, TimeoutError) as exc:
                        problems.append(f"{peer} chunk {i}: {exc}")
                        continue
                    if sha256(raw) != want:
                        problems.append(f"{peer} chunk {i}: does not match the manifest's hash (tampered)")
                        continue
                    part = snapshot.decode_chunk(raw, height, i)
                    break
                if part is None:
                    raise StateSyncError(f"no peer served chunk {i} of the snapshot at height {height}: "
                                         + "; ".join(problems[-len(urls):]))
                after = snapshot.check_chunk(part, i, after)
                leaves.update(part)
            restored = snapshot.restore(store, height, leaves, block.header.state_root)
            return Synced(block, cert, restored, source)
    raise StateSyncError("no peer offered a valid snapshot: " + "; ".join(problems))
