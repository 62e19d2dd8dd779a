"""State sync, client side: fetch the latest snapshot from one or more peers' client APIs
(node/snapshot_api.py), verify it and rebuild the state tree (ledger/snapshot.py).

Trust: the snapshot's block must carry a commit certificate signed by a quorum of the set
that decides its height. `sync_snapshot` takes that set from its caller; `bootstrap` finds
it by following the peer's certified validator-set changes from the genesis set
(GET /v1/light/validator_changes, each change checked by ledger.lightclient.follow_change),
so a peer cannot pass off a set of its own. Its header's state root then anchors
everything else: each chunk must hash to the manifest's chunk hash (so a lying peer is caught
per chunk and another is asked), keep the key-hash order, and the rebuilt root must equal the
certified state root, or the sync is refused with `state_root_mismatch`.

`bootstrap` wires it into node start-up (`cxl node start --state-sync URL[,URL...]`, or
config `state_sync`): on an empty data directory only, it syncs, then writes the state,
its tree, the certified block and the head in one synced batch (`ledger.snapshot.install_puts`);
the node then opens the chain at that height and catches up from its peers as usual. A data
directory that already holds a chain is never touched.
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
    validators: list[bytes]  # the keys that decide the snapshot's height (they signed its certificate)


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


def decode_manifest(doc: dict) -> tuple[Block, Certificate, list[bytes]]:
    """A GET /v1/snapshot answer's block, certificate and chunk hashes, shape-checked (not trusted)."""
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
    return block, cert, hashes


def check_certified(cert: Certificate, chain_id: str, validators: list[bytes]) -> None:
    """The snapshot block's certificate is signed by a quorum of `validators`."""
    try:
        cert.verify(chain_id, validators)
    except LedgerError as exc:
        raise StateSyncError(f"the snapshot's block is not certified by the trusted validator set: {exc}",
                             "bad_snapshot_certificate") from exc


async def sync_snapshot(urls: list[str], chain_id: str, validators, store: Store) -> Synced:
    """Fetch and verify the latest snapshot of the first peer that has a valid one; each
    chunk from the first peer (starting with that one) whose copy checks out.

    `validators`: the keys trusted to decide the snapshot's height, or an async function
    ``(session, url, height) -> keys`` that finds them (see `bootstrap`)."""
    if not urls:
        raise StateSyncError("no state-sync peers given")
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
    problems: list[str] = []
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for source in urls:
            try:
                block, cert, hashes = decode_manifest(await _get_json(session, source + "/v1/snapshot"))
                keys = await validators(session, source, block.height) if callable(validators) else validators
                check_certified(cert, chain_id, keys)
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
            return Synced(block, cert, restored, source, list(keys))
    raise StateSyncError("no peer offered a valid snapshot: " + "; ".join(problems))


def parse_urls(text: str) -> list[str]:
    """`URL[,URL...]` -> the API base URLs, each checked; a clear error otherwise."""
    urls = [u.strip().rstrip("/") for u in str(text or "").split(",") if u.strip()]
    if not urls:
        raise StateSyncError("state_sync: give one or more node API URLs, e.g. http://10.0.0.2:26701",
                             "bad_state_sync_urls")
    for u in urls:
        if not (u.startswith("http://") or u.startswith("https://")) or len(u) > 500:
            raise StateSyncError(f"state_sync: {u!r} is not an http(s) URL of a node's client API",
                                 "bad_state_sync_urls")
    return urls


def is_empty(store: Store) -> bool:
    from ledger.chain import META_GENESIS
    return store.get(META_GENESIS) is None


async def follow_validator_changes(session: aiohttp.ClientSession, url: str, genesis_doc: dict,
                                   height: int) -> list[bytes]:
    """The keys deciding `height`, proven from the genesis set by following `url`'s certified
    validator-set changes (GET /v1/light/validator_changes, checked by
    ledger.lightclient.follow_change). A node without that endpoint leaves the genesis set."""
    from ledger import lightclient

    sets = [lightclient.genesis_set(genesis_doc)]
    while True:
        async with session.get(f"{url}/v1/light/validator_changes",
                               params={"from": str(sets[-1].after), "limit": "1000"}) as r:
            if r.status == 404:
                try:
                    code = (await r.json())["error"]["code"]
                except (ValueError, KeyError, TypeError, aiohttp.ContentTypeError):
                    code = "http_404"
                if code in ("not_found", "http_404"):  # an older node without the endpoint
                    break
            if r.status != 200:
                raise StateSyncError(f"{url}/v1/light/validator_changes: HTTP {r.status}: {(await r.text())[:200]}")
            page = await r.json()
        try:
            if not lightclient.follow_page(genesis_doc["chain_id"], sets, page, until=height):
                break
        except lightclient.LightClientError as exc:
            raise StateSyncError(f"{url}: a validator-set change does not verify [{exc.code}]: {exc}",
                                 "bad_validator_change") from None
    return lightclient.set_deciding(sets, height).keys


async def bootstrap(store: Store, genesis_doc: dict, genesis_hash: bytes, urls: list[str], log) -> int | None:
    """Install the latest verified snapshot of `urls` into an empty `store`; the height
    installed, or None when the store already holds a chain (then nothing is fetched).

    The snapshot's certificate is checked against the set that decides its height, found by
    following the peer's certified validator-set changes from the genesis set
    (`follow_validator_changes`); a snapshot that set did not sign is refused
    (`bad_snapshot_certificate`)."""
    if not is_empty(store):
        log.info("state sync skipped: the data directory already holds a chain (it catches up from its peers)")
        return None

    async def keys_at(session, url, height):
        return await follow_validator_changes(session, url, genesis_doc, height)

    log.info("state sync: fetching the latest snapshot from %s", ", ".join(urls))
    synced = await sync_snapshot(urls, genesis_doc["chain_id"], keys_at, store)
    store.write(snapshot.install_puts(genesis_hash, synced.block, synced.cert, synced.restored, synced.validators),
                sync=True)
    log.info("state sync: installed height %d (state root %s, %d state entries) from %s", synced.block.height,
             synced.restored.root.hex(), len(synced.restored.state), synced.source)
    return synced.block.height
