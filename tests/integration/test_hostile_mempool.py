"""One organisation tries to fill a real node's mempool with nonce-gapped transactions
(the reported attack: its three member keys, large memos, nonce 0 never sent). Others
must still get in and commit; bounded counts, no timing assertions."""

from __future__ import annotations

import base64
import dataclasses

import aiohttp
import pytest

from genesis.schema import save as save_genesis
from genesis.testnet import make_testnet
from ledger.keystore import write_key
from ledger.tx import make_tx
from node.app import Node
from node.config import init_home, load_config

NET = make_testnet(n_orgs=3, n_validators=1, chain_id="cxl-hostile")
CHAIN_ID = NET.doc["chain_id"]
ATTACKERS = [NET.admins["org1"], NET.operators["org1"], NET.auditors["org1"]]
HONEST = NET.operators["org2"]
POOL_BYTES = 2 * 1024 * 1024
BATCH = 200  # 200 x 8 KB memos stay under the 4 MiB request body limit


def gapped(signer, nonce: int, memo_len: int):
    return make_tx(signer, CHAIN_ID, nonce, "transfer", {"to": HONEST.address, "amount": 1, "memo": "m" * memo_len})


@pytest.fixture
async def node(tmp_path):
    save_genesis(NET.doc, tmp_path / "genesis.json")
    write_key(tmp_path / "validator.json", NET.validators[0])
    home = tmp_path / "home"
    init_home(home, tmp_path / "genesis.json", tmp_path / "validator.json", api_port=1,
              mempool_max_bytes=POOL_BYTES)
    n = Node(home, config=dataclasses.replace(load_config(home), api_port=0))
    await n.start()
    yield n
    await n.stop()


async def post_txs(s: aiohttp.ClientSession, url: str, txs) -> list[str]:
    body = {"txs": [base64.b64encode(t.raw).decode() for t in txs]}
    async with s.post(url + "/v1/txs", json=body) as r:
        assert r.status == 200
        return [x.get("status") or x["error"]["code"] for x in (await r.json())["results"]]


async def test_one_org_parking_gapped_txs_does_not_lock_others_out(node):
    url = node.api_url
    codes: dict[str, int] = {}
    async with aiohttp.ClientSession() as s:
        for signer in ATTACKERS:
            for memo_len in (8_000, 256):  # huge memos first, then the largest a transfer may carry
                for start in range(1, 1_001, BATCH):  # nonce 0 is never sent: all of them wait
                    results = await post_txs(s, url, [gapped(signer, n, memo_len) for n in range(start, start + BATCH)])
                    for c in results:
                        codes[c] = codes.get(c, 0) + 1
                    if "pending" not in results:
                        break
        async with s.get(url + "/v1/status") as r:
            mp = (await r.json())["mempool"]
        assert mp["ready"] == 0 and codes.get("pending", 0) == mp["txs"] > 0
        assert mp["bytes"] <= POOL_BYTES // 4  # org1 hit its share, not the pool's limit
        # 8 KB memos are no transfer; the auditor may not send one; each key then met its byte share
        assert {"payload_too_large", "unauthorized", "sender_quota"} <= set(codes), codes

        t = make_tx(HONEST, CHAIN_ID, 0, "transfer", {"to": NET.admins["org3"].address, "amount": 3})
        assert await post_txs(s, url, [t]) == ["pending"]
        async with s.get(url + f"/v1/txs/{t.hash.hex()}?wait=10") as r:
            done = await r.json()
        assert done["status"] == "committed" and done["receipt"]["code"] == "ok"
