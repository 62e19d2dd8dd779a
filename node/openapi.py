"""The OpenAPI 3 description of the client API, served at GET /v1/openapi.json and
written to docs/openapi.json (`python -m node.openapi > docs/openapi.json`).

Extensions add their paths with `add_openapi_paths(app, {...})`."""

from __future__ import annotations

import copy
import json

from aiohttp import web

OPENAPI_PATHS: web.AppKey = web.AppKey("cxl_openapi_paths", dict)

HEX32 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
HEX = {"type": "string", "pattern": "^[0-9a-f]*$"}
B64 = {"type": "string", "format": "byte"}
# bech32 with HRP "cx" (the pattern checks the shape; the node also checks the checksum)
ADDRESS = {"type": "string", "format": "cxl-address", "pattern": "^cx1[02-9ac-hj-np-z]{38}$"}
# what a path or query parameter naming an account accepts: an address or a public key
ADDRESS_OR_KEY = {"type": "string", "pattern": "^(cx1[02-9ac-hj-np-z]{38}|[0-9a-fA-F]{64})$",
                  "format": "cxl-address-or-key"}
MAX_HEIGHT = 2**63 - 1
# ?prove=1 on state reads (node/proofs.py): the stored entries with Merkle proofs, header, certificate
PROVE_PARAM = {"name": "prove", "in": "query", "required": False,
               "schema": {"type": "string", "enum": ["1", "0", "true", "false"]},
               "description": "1: add `proof` (state entries with Merkle proofs, the header and certificate "
                              "of the height; docs/api.md Proofs)"}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict:
    text = {400: "Malformed request", 401: "Bad signature", 403: "Sender not permitted", 404: "Unknown",
            408: "Request body not received in time (body_timeout)", 409: "Nonce already used or taken",
            413: "Body or transaction too large", 422: "Transaction rejected",
            429: "Sender over its mempool quota, or every long-poll slot taken (too_many_waits)",
            503: "Mempool full, or too many connections"}
    return {str(s): _json(_ref("Error"), text[s]) for s in statuses}


SCHEMAS = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string", "description": "stable machine-readable code"},
                       "message": {"type": "string", "description": "what was wrong and what to do"}}}}},
    "Status": {"type": "object", "properties": {
        "chain_id": {"type": "string"}, "genesis_hash": HEX32, "node_key": HEX32, "node_address": ADDRESS,
        "height": {"type": "integer"}, "head_hash": HEX32, "state_root": HEX32, "time_ms": {"type": "integer"},
        "now_ms": {"type": "integer"}, "view": {"type": "integer"}, "view_changes": {"type": "integer"},
        "base_height": {"type": "integer", "description": "0, or the state-sync snapshot height this node "
                        "started from (it holds no block below it)"},
        "primary": {**HEX32, "nullable": True}, "validators": {"type": "array", "items": _ref("Validator")},
        "mempool": {"type": "object", "properties": {"txs": {"type": "integer"}, "bytes": {"type": "integer"},
                                                     "ready": {"type": "integer"}}},
        "peers": {"type": "array", "items": {"type": "object"}}, "evidence": {"type": "integer"},
        "clock": {"type": "object", "description": "this node's clock against its peers' (docs/operations.md)",
                  "properties": {"skew_ms": {"type": "integer", "nullable": True},
                                 "ok": {"type": "boolean", "nullable": True},
                                 "tolerance_ms": {"type": "integer"}, "peers_measured": {"type": "integer"},
                                 "blocks_refused_for_time": {"type": "integer"}}},
        # operations fields (issue 12)
        "version": {"type": "string", "description": "installed cxl package version"},
        "role": {"type": "string", "enum": ["validator", "full"],
                 "description": "what this node is for the next height: a voter, or a full node that follows "
                                "certified blocks and signs nothing (it follows the validator set)"},
        "configured_role": {"type": "string", "enum": ["validator", "full"],
                            "description": "the role config.json starts the node as"},
        "best_peer_height": {"type": "integer", "nullable": True,
                             "description": "the highest height a connected peer reported with a block answer"},
        "blocks_behind": {"type": "integer", "nullable": True,
                          "description": "best_peer_height minus height (null: no peer has answered yet)"},
        "full_nodes": {"type": "array", "description": "full nodes with a session to this node",
                       "items": {"type": "object", "properties": {
                           "key": HEX32, "remote": {"type": "string"}, "connected_s": {"type": "integer"},
                           "block_requests": {"type": "integer"}, "blocks_served": {"type": "integer"},
                           "txs_received": {"type": "integer"},
                           "throttled": {"type": "integer", "description": "block requests paced by the budget"}}}},
        "follow": {"type": "object", "description": "following as a full node", "properties": {
            "refused_blocks": {"type": "integer", "description": "fetched blocks refused (certificate, execution)"},
            "last_refusal": {"type": "string", "nullable": True},
            "refused_consensus": {"type": "integer", "description": "consensus messages dropped: not a voter"},
            "role_changes": {"type": "array", "items": {"type": "object", "properties": {
                "role": {"type": "string", "enum": ["validator", "full"]},
                "height": {"type": "integer", "description": "the first height of the new role"}}}}}},
        "catching_up": {"type": "boolean", "description": "applying blocks fetched from peers (a full node: more "
                                                          "than 3 blocks behind its best peer)"},
        "peers_connected": {"type": "integer", "description": "validators with a live session to this node (a "
                                                              "full node: any peer it follows)"},
        "connected_peers": {"type": "array", "items": HEX32},
        "last_commit_age_ms": {"type": "integer", "nullable": True,
                               "description": "now minus the head block's time (null at height 0)"},
        "views_since_commit": {"type": "integer"},
        "stalled_reason": {"type": "string", "nullable": True, "enum": ["no_quorum", "view_changes", None]}}},
    "Health": {"type": "object", "required": ["status", "reasons"], "properties": {
        "status": {"type": "string", "enum": ["ready", "degraded"]},
        "reasons": {"type": "array", "items": {"type": "object", "properties": {
            "code": {"type": "string", "enum": ["no_peers", "no_quorum", "behind", "stalled", "duplicate_key"]},
            "message": {"type": "string"}}}}}},
    "TxSubmit": {"description": "exactly one of tx (one signed transaction) / txs (a batch)", "oneOf": [
        {"type": "object", "required": ["tx"], "additionalProperties": False, "properties": {"tx": B64}},
        {"type": "object", "required": ["txs"], "additionalProperties": False, "properties": {
            "txs": {"type": "array", "items": B64, "minItems": 1, "maxItems": 1000,
                    "description": "at most max_batch_txs (default 1000)"}}}]},
    "TxAccepted": {"type": "object", "required": ["hash", "status"], "properties": {
        "hash": HEX32, "status": {"type": "string", "enum": ["pending", "committed"]},
        "height": {"type": "integer"}}},
    "TxBatchResult": {"type": "object", "properties": {"results": {"type": "array", "items": {
        "oneOf": [_ref("TxAccepted"), _ref("Error")]}}}},
    "Tx": {"type": "object", "properties": {
        "chain_id": {"type": "string"}, "sender": HEX32, "sender_address": ADDRESS,
        "nonce": {"type": "integer"}, "type": {"type": "string"},
        "payload": {"type": "object", "description": "bytes values as hex"},
        "expiry": {"type": "integer"}, "signature": HEX}},
    "Receipt": {"type": "object", "properties": {
        "code": {"type": "string", "description": "ok or a stable error code"},
        "message": {"type": "string"}, "result": {"type": "object"}}},
    "TxStatus": {"type": "object", "required": ["hash", "status"], "properties": {
        "hash": HEX32, "status": {"type": "string", "enum": ["committed", "pending"]},
        "height": {"type": "integer"}, "index": {"type": "integer"}, "block_hash": HEX32,
        "ready": {"type": "boolean", "description": "pending: false while an earlier nonce is missing"},
        "tx": _ref("Tx"), "receipt": _ref("Receipt")}},
    "Header": {"type": "object", "properties": {
        "chain_id": {"type": "string"}, "height": {"type": "integer"}, "view": {"type": "integer"},
        "time_ms": {"type": "integer"}, "parent_hash": HEX32, "txs_root": HEX32, "results_root": HEX32,
        "state_root": HEX32, "proposer": HEX32, "validator_set_hash": HEX32,
        "next_validators_hash": {**HEX32, "description": "H(encode(sorted keys)) of the set signing the next height"},
        "last_cert_hash": HEX32, "hash": HEX32, "bytes": {**HEX, "description": "canonical encoding; its SHA-256 is the block hash"}}},
    "Certificate": {"type": "object", "nullable": True, "properties": {
        "height": {"type": "integer"}, "view": {"type": "integer"}, "block_hash": HEX32, "hash": HEX32,
        "signatures": {"type": "array", "items": {"type": "object", "properties": {"key": HEX32, "signature": HEX}}}}},
    "Block": {"type": "object", "properties": {
        "height": {"type": "integer"}, "hash": HEX32, "header": _ref("Header"),
        "txs": {"type": "array", "items": HEX32}, "certificate": _ref("Certificate"),
        "last_certificate": _ref("Certificate"), "block": B64, "certificate_raw": {**B64, "nullable": True}}},
    "TxProof": {"type": "object", "properties": {
        "hash": HEX32, "height": {"type": "integer"}, "index": {"type": "integer"}, "tx_count": {"type": "integer"},
        "tx": HEX, "tx_proof": {"type": "array", "items": HEX32}, "receipt": _ref("Receipt"),
        "receipt_bytes": HEX, "receipt_proof": {"type": "array", "items": HEX32},
        "header": _ref("Header"), "certificate": _ref("Certificate"), "header_raw": B64, "certificate_raw": B64}},
    "Account": {"type": "object", "properties": {
        "address": ADDRESS, "balance": {"type": "integer"}, "nonce": {"type": "integer"},
        "pending_nonce": {"type": "integer"}, "height": {"type": "integer"},
        "member": {"type": "object", "nullable": True,
                   "properties": {"org": {"type": "string"}, "role": {"type": "string"}, "key": HEX32}}}},
    "Validator": {"type": "object", "properties": {
        "key": HEX32, "org": {"type": "string"}, "p2p": {"type": "string"}, "api": {"type": "string"},
        "address": ADDRESS}},
    "Validators": {"type": "object", "properties": {
        "height": {"type": "integer"}, "quorum": {"type": "integer"},
        "validators": {"type": "array", "items": _ref("Validator")}}},
}

HASH_PARAM = {"name": "hash", "in": "path", "required": True, "schema": HEX32}
ADDRESS_PARAM = {"name": "address", "in": "path", "required": True, "schema": ADDRESS_OR_KEY,
                 "description": "a checksummed address (cx1..., 41 characters) or a 64-hex-digit public key"}

PATHS = {
    "/v1/status": {"get": {"summary": "Node and chain status",
                           "responses": {"200": _json(_ref("Status"), "Status")}}},
    "/v1/txs": {"post": {
        "summary": "Submit one transaction (202) or a batch (200, one result per item)",
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("TxSubmit")}}},
        "responses": {"202": _json(_ref("TxAccepted"), "Accepted, pending"),
                      "200": _json({"oneOf": [_ref("TxBatchResult"), _ref("TxAccepted")]},
                                   "Batch results, or a single transaction already committed"),
                      **_errors(400, 401, 403, 408, 409, 413, 422, 429, 503)}}},
    "/v1/txs/{hash}": {"get": {
        "summary": "A transaction: committed with its receipt, or pending",
        "parameters": [HASH_PARAM, {"name": "wait", "in": "query", "required": False,
                                    "schema": {"type": "number", "minimum": 0, "maximum": 3600},
                                    "description": "long-poll up to this many seconds (capped at max_wait_s) "
                                                   "for the commit"}],
        "responses": {"200": _json(_ref("TxStatus"), "Found"), **_errors(400, 404, 429)}}},
    "/v1/txs/{hash}/proof": {"get": {
        "summary": "Offline-verifiable inclusion proof: header, certificate, Merkle paths, receipt",
        "parameters": [HASH_PARAM],
        "responses": {"200": _json(_ref("TxProof"), "Proof"), **_errors(400, 404)}}},
    "/v1/blocks/{height}": {"get": {
        "summary": "A block with its certificate (height, 'latest' or block hash)",
        "parameters": [{"name": "height", "in": "path", "required": True,
                        "schema": {"type": "string", "pattern": "^([0-9]{1,19}|latest|[0-9a-fA-F]{64})$"},
                        "description": "a height (ASCII digits), latest, or a block hash; heights above the "
                                       "head answer 404"}],
        "responses": {"200": _json(_ref("Block"), "Block"), **_errors(400, 404)}}},
    "/v1/accounts/{address}": {"get": {
        "summary": "Balance, next nonce and membership of an address (or public key)",
        "parameters": [ADDRESS_PARAM, PROVE_PARAM],
        "responses": {"200": _json(_ref("Account"), "Account"), **_errors(400)}}},
    "/v1/validators": {"get": {"summary": "The validator set deciding the next height",
                               "responses": {"200": _json(_ref("Validators"), "Validators")}}},
    "/v1/evidence": {"get": {
        "summary": "Conflicting signed messages seen from validators (latest 1000)",
        "responses": {"200": _json({"type": "object", "properties": {
            "count": {"type": "integer"},
            "evidence": {"type": "array", "items": {"type": "object", "properties": {
                "kind": {"type": "string"}, "sender": HEX32, "msg_a": HEX, "msg_b": HEX,
                "time_ms": {"type": "integer"}}}}}}, "Evidence")}}},
    "/v1/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3"}}}},
    "/health": {"get": {"summary": "Ready, or degraded with reasons (Prometheus metrics are on the metrics listener)",
                        "responses": {"200": _json(_ref("Health"), "Ready"),
                                      "503": _json(_ref("Health"), "Degraded")}}},
}


def base_document() -> dict:
    return {
        "openapi": "3.0.3",
        "info": {"title": "cxl node client API", "version": "1",
                 "description": "JSON over HTTP. Bytes are lower-case hex; raw encodings base64. "
                                "Errors are {\"error\": {\"code\", \"message\"}}."},
        "paths": copy.deepcopy(PATHS),
        "components": {"schemas": copy.deepcopy(SCHEMAS)},
    }


def add_openapi_paths(app: web.Application, paths: dict, schemas: dict | None = None) -> None:
    extra = app.setdefault(OPENAPI_PATHS, {"paths": {}, "schemas": {}})  # type: ignore[arg-type]
    extra["paths"].update(paths)
    extra["schemas"].update(schemas or {})


def openapi_document(app: web.Application | None = None) -> dict:
    doc = base_document()
    if app is not None and OPENAPI_PATHS in app:
        doc["paths"].update(app[OPENAPI_PATHS]["paths"])
        doc["components"]["schemas"].update(app[OPENAPI_PATHS]["schemas"])
    return doc


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(base_document(), indent=2))
