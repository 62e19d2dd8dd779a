"""JSON views of ledger objects: bytes as hex, raw encodings that verify offline."""

from __future__ import annotations

import base64
import json

from genesis.testnet import make_testnet
from ledger.block import Block, Certificate
from ledger.encoding import decode, sha256
from ledger.tx import make_tx

from node import views
from node.openapi import openapi_document


def test_jsonable_hexes_bytes_everywhere():
    value = {"a": b"\x01\x02", "b": [b"\xff", {"c": (b"\x00",)}], "n": 3, "s": "x", "z": None}
    assert views.jsonable(value) == {"a": "0102", "b": ["ff", {"c": ["00"]}], "n": 3, "s": "x", "z": None}


def test_block_and_proof_views_round_trip():
    net = make_testnet(n_validators=1)
    chain = net.chain()
    admin, op = net.admins["org1"], net.operators["org2"]
    txs = [make_tx(admin, chain.chain_id, n, "transfer", {"to": op.address, "amount": 1}) for n in range(3)]
    block, _ = chain.build_block(txs, time_ms=1_700_000_001_000, view=0, proposer=net.validators[0].public_key,
                                 last_cert=None)
    cert = net.certify(chain, block)
    chain.commit_block(block, cert, chain.validate_block(block))

    bv = json.loads(json.dumps(views.block_view(chain.get_block(1), chain.get_cert(1))))
    assert bv["hash"] == block.hash.hex() == sha256(bytes.fromhex(bv["header"]["bytes"])).hex()
    assert Block.decode(base64.b64decode(bv["block"])) == block
    assert Certificate.from_wire(decode(base64.b64decode(bv["certificate_raw"]))) == cert
    assert bv["txs"] == [t.hash.hex() for t in txs] and bv["last_certificate"] is None

    pv = json.loads(json.dumps(views.proof_view(chain.tx_proof(txs[1].hash), txs[1].hash)))
    assert pv["index"] == 1 and pv["tx_count"] == 3 and pv["receipt"]["code"] == "ok"
    assert bytes.fromhex(pv["tx"]) == txs[1].raw
    assert base64.b64decode(pv["header_raw"]) == block.header.encode()

    tv = views.tx_view(txs[0])
    assert tv["sender"] == admin.public_key.hex() and tv["payload"] == {"to": op.address, "amount": 1}


def test_openapi_document_is_json_and_references_resolve():
    doc = openapi_document()
    text = json.dumps(doc)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}:
        assert ref in doc["components"]["schemas"], ref
