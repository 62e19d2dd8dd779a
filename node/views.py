"""JSON rendering of ledger objects for the client API: bytes as lower-case hex, raw
encodings (for offline verification) as base64, maps with bytes values hex-encoded."""

from __future__ import annotations

import base64

from ledger.block import Block, Certificate, Header
from ledger.execution import Receipt
from ledger.tx import SignedTx


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def jsonable(value):
    """Any decoded ledger value as JSON: bytes -> hex, tuples -> lists, recursively."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def header_view(h: Header) -> dict:
    return {
        "chain_id": h.chain_id,
        "height": h.height,
        "view": h.view,
        "time_ms": h.time_ms,
        "parent_hash": h.parent_hash.hex(),
        "txs_root": h.txs_root.hex(),
        "results_root": h.results_root.hex(),
        "state_root": h.state_root.hex(),
        "proposer": h.proposer.hex(),
        "validator_set_hash": h.validator_set_hash.hex(),
        "next_validators_hash": h.next_validators_hash.hex(),
        "last_cert_hash": h.last_cert_hash.hex(),
        "hash": h.hash.hex(),
        "bytes": h.encode().hex(),
    }


def certificate_view(c: Certificate | None) -> dict | None:
    if c is None:
        return None
    return {
        "height": c.height,
        "view": c.view,
        "block_hash": c.block_hash.hex(),
        "signatures": [{"key": k.hex(), "signature": s.hex()} for k, s in c.signatures],
        "hash": c.hash.hex(),
    }


def tx_view(stx: SignedTx) -> dict:
    tx = stx.tx
    return {
        "chain_id": tx.chain_id,
        "sender": tx.sender.hex(),
        "sender_address": tx.sender_address,
        "nonce": tx.nonce,
        "type": tx.type,
        "payload": jsonable(tx.payload),
        "expiry": tx.expiry,
        "signature": stx.signature.hex(),
    }


def receipt_view(r: Receipt) -> dict:
    return {"code": r.code, "message": r.message, "result": jsonable(r.result)}


def block_view(block: Block, cert: Certificate | None) -> dict:
    from ledger.encoding import sha256

    return {
        "height": block.height,
        "hash": block.hash.hex(),
        "header": header_view(block.header),
        "txs": [sha256(raw).hex() for raw in block.txs],
        "certificate": certificate_view(cert),
        "last_certificate": certificate_view(block.last_cert),
        "block": b64(block.encode()),
        "certificate_raw": None if cert is None else b64(cert.encode()),
    }


def proof_view(proof: dict, tx_hash: bytes) -> dict:
    """`Chain.tx_proof` as JSON: bytes hex, and the raw header / certificate base64 so a
    client can check them against the genesis file alone."""
    header: Header = proof["header"]
    cert: Certificate = proof["certificate"]
    receipt: Receipt = proof["receipt"]
    return {
        "hash": tx_hash.hex(),
        "height": proof["height"],
        "index": proof["index"],
        "tx_count": proof["tx_count"],
        "tx": proof["tx"].hex(),
        "tx_proof": [p.hex() for p in proof["tx_proof"]],
        "receipt": receipt_view(receipt),
        "receipt_bytes": receipt.encode().hex(),
        "receipt_proof": [p.hex() for p in proof["receipt_proof"]],
        "header": header_view(header),
        "certificate": certificate_view(cert),
        "header_raw": b64(header.encode()),
        "certificate_raw": b64(cert.encode()),
    }


def validator_view(v: dict) -> dict:
    from ledger.crypto import address_of

    out = jsonable(v)
    out["address"] = address_of(v["key"])
    return out


def clock_view(skew_ms: int | None, peers: list[dict], tolerance_ms: int, refused_blocks: int) -> dict:
    """This node's clock against its peers' (handshake samples, see docs/operations.md).
    `skew_ms` is our clock minus the connected peers' median; `ok` is False when it is at
    least half the chain's time_skew_ms (blocks then start to be refused one way or the
    other), None when no peer was measured."""
    return {
        "skew_ms": skew_ms,
        "ok": None if skew_ms is None else abs(skew_ms) * 2 < tolerance_ms,
        "tolerance_ms": tolerance_ms,
        "peers_measured": sum(1 for p in peers if p.get("connected") and p.get("clock_offset_ms") is not None),
        "blocks_refused_for_time": refused_blocks,
    }
