"""Transaction receipts that verify offline with the genesis file alone.

A receipt (JSON, format ``cxl-receipt/1``) holds the block header and its commit
certificate, the signed transaction with its Merkle audit path to the header's
``txs_root``, the execution result with its audit path to ``results_root``, and, when
the validator set changed before the transaction's block, the evidence for each change
(see `audit.replay.ValidatorChange`). Byte fields are base64 (``raw``) or hex (hashes,
audit paths); the ``decoded`` parts are for people and are checked against the raw bytes.

Verification trusts nothing in the file: it starts from the genesis validator set,
walks the changes (each one certified by the set before it, its new set proven by a
state-tree inclusion proof of the ``validators`` entry against the installing block's
state root), then checks the certificate of the
transaction's block against the set in force at that height and both audit paths.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from ledger.block import Certificate, Header, validator_set_hash
from ledger.encoding import decode, expect, expect_array
from ledger.errors import BlockInvalid, EncodingError, LedgerError
from ledger.execution import Receipt
from ledger.merkle import verify_inclusion
from ledger.statetree import verify_proof
from ledger.tx import decode_tx

FORMAT = "cxl-receipt/1"
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})*$")
# What a crafted proof or receipt can make a decoder or a lookup raise: all of them mean
# "malformed input" and become a ReceiptError, never a traceback.
_MALFORMED = (EncodingError, KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError)


class ReceiptError(Exception):
    """A receipt that does not verify, or cannot be built; `code` is stable."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _bytes(value: Any, what: str) -> bytes:
    """bytes, hex text, base64 text, or {"raw": base64}: whichever the proof came with."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, dict) and "raw" in value:
        return _bytes(value["raw"], what)
    if isinstance(value, str):
        if _HEX.match(value):
            return bytes.fromhex(value)
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            pass
    raise ReceiptError(f"{what}: expected bytes as hex or base64", "bad_receipt_file")


def decode_result(raw: bytes, what: str = "result") -> Receipt:
    """An execution result's canonical bytes, shape-checked (`Receipt.from_wire` only indexes)."""
    w = expect_array(decode(raw), 3, what)
    return Receipt(expect(w[0], str, f"{what}.code"), expect(w[1], str, f"{what}.message"),
                   expect(w[2], dict, f"{what}.result"))


def _raw(value: Any, what: str) -> bytes:
    if isinstance(value, (Header, Certificate, Receipt)):
        return value.encode()
    if isinstance(value, dict) and "raw" not in value and "bytes" in value:  # the API's header view
        return _bytes(value["bytes"], what)
    return _bytes(value, what)


def _proof_raw(proof: dict, name: str) -> bytes:
    """`header` / `certificate` as raw bytes: the API adds `header_raw` / `certificate_raw` (base64)."""
    if proof.get(f"{name}_raw") is not None:
        return _bytes(proof[f"{name}_raw"], f"{name}_raw")
    return _raw(proof[name], name)


def jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def header_json(h: Header) -> dict:
    return {"chain_id": h.chain_id, "height": h.height, "view": h.view, "time_ms": h.time_ms,
            "parent_hash": h.parent_hash.hex(), "txs_root": h.txs_root.hex(), "results_root": h.results_root.hex(),
            "state_root": h.state_root.hex(), "proposer": h.proposer.hex(),
            "validator_set_hash": h.validator_set_hash.hex(), "next_validators_hash": h.next_validators_hash.hex(),
            "last_cert_hash": h.last_cert_hash.hex()}


def cert_json(c: Certificate) -> dict:
    return {"height": c.height, "view": c.view, "block_hash": c.block_hash.hex(),
            "signers": [k.hex() for k, _ in c.signatures]}


def _receipt_raw(proof: dict) -> bytes:
    for name in ("receipt_raw", "receipt_bytes"):
        if proof.get(name) is not None:
            return _bytes(proof[name], name)
    r = proof["receipt"]
    if isinstance(r, Receipt):
        return r.encode()
    if isinstance(r, dict) and "raw" in r:
        return _bytes(r["raw"], "receipt")
    if isinstance(r, dict):
        return Receipt(expect(r["code"], str, "receipt.code"), expect(r.get("message", ""), str, "receipt.message"),
                       expect(r.get("result", {}), dict, "receipt.result")).encode()
    return _bytes(r, "receipt")


def build_receipt(proof: dict, *, genesis_hash: bytes | None = None, validator_changes=()) -> dict:
    """A receipt from `Chain.tx_proof(hash)` or from the JSON of `GET /v1/txs/{hash}/proof`.

    `validator_changes`: `audit.replay.ValidatorChange` items (or their receipt JSON) for
    every change at or below the block's height; needed only when the set changed.
    Anything malformed in `proof` is a ReceiptError with code ``bad_proof``.
    """
    try:
        return _build_receipt(proof, genesis_hash, validator_changes)
    except ReceiptError as exc:
        if exc.code == "bad_receipt_file":  # a field that is not bytes: still the proof's fault
            raise ReceiptError(f"the proof is malformed: {exc.message}", "bad_proof") from exc
        raise
    except LedgerError as exc:
        raise ReceiptError(f"the proof is malformed: {exc.message}", "bad_proof") from exc
    except _MALFORMED as exc:
        raise ReceiptError(f"the proof is incomplete or malformed: {_describe(exc)}", "bad_proof") from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"field {exc.args[0]!r} is missing"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return f"{type(exc).__name__}: {exc}"


def _build_receipt(proof: dict, genesis_hash: bytes | None, validator_changes) -> dict:
    if not isinstance(proof, dict):
        raise ReceiptError(f"expected a JSON object, got {type(proof).__name__}", "bad_proof")
    header_raw = _proof_raw(proof, "header")
    cert_raw = _proof_raw(proof, "certificate")
    header = Header.from_wire(decode(header_raw))
    cert = Certificate.from_wire(decode(cert_raw))
    tx_raw = _bytes(proof["tx"], "tx")
    stx = decode_tx(tx_raw, len(tx_raw))
    receipt_raw = _receipt_raw(proof)
    receipt = decode_result(receipt_raw)
    changes = []
    for ch in validator_changes:
        if isinstance(ch, dict):
            changes.append(ch)
            continue
        if ch.height > header.height:
            continue
        ev = ch.evidence
        changes.append({
            "height": ch.height,
            "validators": [k.hex() for k in ch.keys],
            "header": {"raw": _b64(ev["header"])},
            "certificate": {"raw": _b64(ev["certificate"])},
            "validators_value": ev["validators_value"].hex(),
            "state_proof": ev["state_proof"].hex(),
        })
    tx = stx.tx
    return {
        "format": FORMAT,
        "chain_id": header.chain_id,
        "genesis_hash": None if genesis_hash is None else genesis_hash.hex(),
        "height": int(proof["height"]),
        "index": int(proof["index"]),
        "tx_count": int(proof["tx_count"]),
        "tx_hash": stx.hash.hex(),
        "tx": {"raw": _b64(tx_raw), "decoded": {
            "chain_id": tx.chain_id, "sender": tx.sender.hex(), "sender_address": tx.sender_address,
            "nonce": tx.nonce, "type": tx.type, "payload": jsonable(tx.payload), "expiry": tx.expiry,
            "signature": stx.signature.hex()}},
        "tx_proof": [_bytes(p, "tx_proof").hex() for p in expect(proof["tx_proof"], list, "tx_proof")],
        "result": {"raw": _b64(receipt_raw), "code": receipt.code, "message": receipt.message,
                   "result": jsonable(receipt.result)},
        "receipt_proof": [_bytes(p, "receipt_proof").hex()
                          for p in expect(proof["receipt_proof"], list, "receipt_proof")],
        "header": {"raw": _b64(header_raw), "hash": header.hash.hex(), "decoded": header_json(header)},
        "certificate": {"raw": _b64(cert_raw), "decoded": cert_json(cert)},
        "validator_changes": changes,
    }


def _genesis_keys(doc: dict) -> list[bytes]:
    return [bytes.fromhex(v["key"]) for v in doc["validators"]]


def receipt_from_chain(chain, tx_hash: bytes, *, workers: int | None = 1) -> dict:
    """Build a receipt from a Chain (e.g. a node's store), proving validator changes by replay."""
    proof = chain.tx_proof(tx_hash)
    if proof is None:
        raise ReceiptError(f"transaction {tx_hash.hex()} is not in this chain", "unknown_tx")
    changes = []
    if proof["header"].validator_set_hash != validator_set_hash(_genesis_keys(chain.genesis_doc)):
        from audit.replay import replay
        from audit.source import StoreSource

        changes = _changes_by_replay(StoreSource(chain.store, "chain"), chain.genesis_doc, chain.genesis_hash,
                                     proof["height"], workers, replay)
    return build_receipt(proof, genesis_hash=chain.genesis_hash, validator_changes=changes)


def _changes_by_replay(source, doc, ghash, height, workers, replay):
    report = replay(source, doc, ghash, upto=height, workers=workers)
    if not report.ok:
        f = report.failure
        raise ReceiptError(f"cannot prove the validator changes: replay failed at height {f.height}: "
                           f"{f.code}: {f.message}", "replay_failed")
    return [c for c in report.validator_changes if c.height <= height]


def fetch_receipt(node_url: str, tx_hash: bytes | str, *, genesis_doc: dict | None = None,
                  genesis_hash: bytes | None = None, workers: int | None = None) -> dict:
    """Ask a node for `GET /v1/txs/{hash}/proof` and build a receipt from it.

    When the validator set at the transaction's height is not the genesis set, the
    changes are proven by replaying the node's blocks up to that height, which needs the
    genesis (`genesis_doc`, `genesis_hash`).
    """
    from audit.replay import replay
    from audit.source import HttpClient, SourceError

    hexhash = tx_hash.hex() if isinstance(tx_hash, bytes) else tx_hash.lower()
    client = HttpClient(node_url)
    code, data = client.get_json(f"/v1/txs/{hexhash}/proof")
    if code == 404:
        raise ReceiptError(f"{client.base_url} knows no transaction {hexhash} (or has no /v1/txs/{{hash}}/proof)",
                           "unknown_tx")
    if code != 200 or not isinstance(data, dict):
        raise SourceError(f"{client.base_url}: GET /v1/txs/{hexhash}/proof answered {code}", "bad_response")
    proof = data.get("proof", data)
    try:
        return _receipt_from_answer(node_url, proof, genesis_doc, genesis_hash, workers, replay)
    except ReceiptError as exc:
        if exc.code != "bad_proof":
            raise
        raise ReceiptError(f"the node at {client.base_url} sent a malformed answer to GET /v1/txs/{hexhash}/proof "
                           f"({exc.message}); it is not a proof anyone can verify", "malformed_answer") from exc


def _receipt_from_answer(node_url, proof, genesis_doc, genesis_hash, workers, replay) -> dict:
    from audit.source import HttpSource

    try:
        header = Header.from_wire(decode(_proof_raw(proof, "header")))
    except ReceiptError as exc:
        raise ReceiptError(exc.message, "bad_proof") from exc
    except _MALFORMED as exc:
        raise ReceiptError(f"header: {_describe(exc)}", "bad_proof") from exc
    changes = []
    if genesis_doc is not None and header.validator_set_hash != validator_set_hash(_genesis_keys(genesis_doc)):
        changes = _changes_by_replay(HttpSource(node_url), genesis_doc, genesis_hash, header.height, workers, replay)
    elif genesis_doc is None:
        # without the genesis we cannot tell whether the set changed; the verifier will say so
        pass
    return build_receipt(proof, genesis_hash=genesis_hash, validator_changes=changes)


# --- verification ------------------------------------------------------------------------


def _check(cond: bool, message: str, code: str) -> None:
    if not cond:
        raise ReceiptError(message, code)


def _decode_header(value, what: str) -> Header:
    try:
        return Header.from_wire(decode(_bytes(value, what)))
    except _MALFORMED as exc:
        raise ReceiptError(f"{what} does not decode: {exc}", "bad_receipt_file") from exc


def _decode_cert(value, what: str) -> Certificate:
    try:
        return Certificate.from_wire(decode(_bytes(value, what)))
    except _MALFORMED as exc:
        raise ReceiptError(f"{what} does not decode: {exc}", "bad_receipt_file") from exc


def _verify_cert(cert: Certificate, header: Header, keys: list[bytes], what: str) -> None:
    _check(cert.height == header.height and cert.block_hash == header.hash,
           f"{what} certifies another block (height {cert.height})", "cert_wrong_block")
    try:
        cert.verify(header.chain_id, keys)
    except BlockInvalid as exc:
        raise ReceiptError(f"{what}: {exc.message}", "bad_certificate") from exc


def verify_receipt(receipt: dict, genesis_doc: dict, genesis_hash: bytes) -> dict:
    """Verify a receipt with the genesis alone; raise ReceiptError naming what fails.

    Returns a summary: height, tx hash, sender, type, result code and result, and the
    heights of the validator-set changes walked.
    """
    try:
        return _verify(receipt, genesis_doc, genesis_hash)
    except LedgerError as exc:
        raise ReceiptError(exc.message, exc.code) from exc
    except _MALFORMED as exc:
        raise ReceiptError(f"the receipt file is malformed: {_describe(exc)}", "bad_receipt_file") from exc


def _verify(receipt: dict, doc: dict, ghash: bytes) -> dict:
    _check(isinstance(receipt, dict), "a receipt is a JSON object", "bad_receipt_file")
    _check(receipt.get("format") == FORMAT, f"not a {FORMAT} receipt", "bad_receipt_file")
    chain_id = doc["chain_id"]
    if receipt.get("genesis_hash"):
        _check(receipt["genesis_hash"] == ghash.hex(),
               f"the receipt is for genesis {receipt['genesis_hash']}, the genesis file is {ghash.hex()}",
               "wrong_genesis")
    header = _decode_header(receipt["header"], "header")
    height = header.height
    _check(header.chain_id == chain_id, f"the block is from chain {header.chain_id!r}, not {chain_id!r}", "wrong_chain")

    # walk the validator set from genesis to the block's height
    keys = _genesis_keys(doc)
    walked, last = [], 0
    for i, ch in enumerate(receipt.get("validator_changes") or []):
        what = f"validator change {i + 1}"
        h = _decode_header(ch["header"], f"{what}: header")
        _check(last < h.height < height, f"{what}: block {h.height} is out of order", "bad_validator_change")
        _check(h.chain_id == chain_id, f"{what}: another chain", "bad_validator_change")
        _check(h.validator_set_hash == validator_set_hash(keys),
               f"{what}: block {h.height} was not decided by the set known at that point "
               "(a change before it is missing)", "bad_validator_change")
        _verify_cert(_decode_cert(ch["certificate"], f"{what}: certificate"), h, keys, f"{what}: certificate")
        value = _bytes(ch["validators_value"], f"{what}: validators_value")
        _check(verify_proof(h.state_root, b"validators", value, _bytes(ch["state_proof"], f"{what}: state_proof")),
               f"{what}: the validator set is not proven by the state root of block {h.height}",
               "bad_validator_change")
        keys = [v["key"] for v in decode(value)]
        _check([k.hex() for k in keys] == ch.get("validators", [k.hex() for k in keys]),
               f"{what}: the listed validators are not those the block installs", "bad_validator_change")
        walked.append(h.height + 1)
        last = h.height
    _check(header.validator_set_hash == validator_set_hash(keys),
           f"block {height} was decided by a validator set this receipt does not prove "
           "(the validator set changed: rebuild the receipt with its validator changes)", "unknown_validator_set")
    _verify_cert(_decode_cert(receipt["certificate"], "certificate"), header, keys, f"certificate of block {height}")

    # the transaction and its result
    tx_raw = _bytes(receipt["tx"], "tx")
    stx = decode_tx(tx_raw, len(tx_raw))
    _check(stx.hash.hex() == receipt.get("tx_hash", stx.hash.hex()), "tx_hash is not the hash of tx", "bad_receipt_file")
    _check(stx.verify_signature(), "the transaction's signature does not verify", "bad_signature")
    index, size = int(receipt["index"]), int(receipt["tx_count"])
    _check(int(receipt.get("height", height)) == height, "height does not match the header", "bad_receipt_file")
    _check(verify_inclusion(tx_raw, index, size, [bytes.fromhex(p) for p in receipt["tx_proof"]], header.txs_root),
           f"the transaction is not at index {index} of block {height}'s transactions root", "bad_tx_proof")
    res_raw = _bytes(receipt["result"], "result")
    _check(verify_inclusion(res_raw, index, size, [bytes.fromhex(p) for p in receipt["receipt_proof"]],
                            header.results_root),
           f"the result is not at index {index} of block {height}'s results root", "bad_receipt_proof")
    result = decode_result(res_raw)
    shown = receipt["result"]
    if isinstance(shown, dict) and "code" in shown:
        _check(shown["code"] == result.code and shown.get("result", jsonable(result.result)) == jsonable(result.result),
               "the decoded result shown does not match the certified bytes", "bad_receipt_file")
    return {
        "ok": True,
        "chain_id": chain_id,
        "height": height,
        "index": index,
        "block_hash": header.hash.hex(),
        "time_ms": header.time_ms,
        "tx_hash": stx.hash.hex(),
        "sender": stx.tx.sender_address,
        "type": stx.tx.type,
        "code": result.code,
        "message": result.message,
        "result": jsonable(result.result),
        "signers": [k.hex() for k, _ in _decode_cert(receipt["certificate"], "certificate").signatures],
        "validator_changes_walked": walked,
    }
