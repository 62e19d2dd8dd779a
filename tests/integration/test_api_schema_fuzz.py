"""A schema fuzzer against a real node: parameters generated from the node's own OpenAPI
document (patterns, ranges, enums) must never be refused as malformed (400) nor crash
(500), and every answer must be a status the document declares, with the error shape.
Bodies of POST /v1/txs generated from the TxSubmit oneOf get only declared 4xx answers."""

from __future__ import annotations

import base64
import http.client
import json
import re
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ledger.crypto import address_from_payload
from genesis.schema import save as save_genesis
from genesis.testnet import make_testnet
from ledger.keystore import write_key
from node import gov_api, market_api, openapi as core_openapi
from node.config import init_home

from nodethread import NodeThread

# no interval heartbeats: the genesis time is years ago, and these tests count blocks from 0
NET = make_testnet(n_validators=1, params={"heartbeat_interval_ms": 0})
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fuzz")
    save_genesis(NET.doc, directory / "genesis.json")
    write_key(directory / "validator.json", NET.validators[0])
    home = directory / "home"
    # max_wait_s=0: a generated ?wait= answers at once instead of holding the test
    init_home(home, directory / "genesis.json", directory / "validator.json", api_port=1, max_wait_s=0)
    nt = NodeThread(home)
    status, doc = request(nt.node.api_port, "GET", "/v1/openapi.json")
    assert status == 200
    yield nt, nt.node.api_port, doc
    nt.stop()


def request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, object]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        is_json = resp.getheader("Content-Type", "").startswith("application/json")
        return resp.status, json.loads(raw) if is_json else raw
    finally:
        conn.close()


def strategy(schema: dict):
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "integer":
        return st.integers(schema.get("minimum", -2**63), schema.get("maximum", 2**63))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if schema.get("format") == "cxl-address":  # the pattern cannot say the checksum must match
        return st.binary(min_size=20, max_size=20).map(address_from_payload)
    if schema.get("format") == "cxl-address-or-key":
        return st.binary(min_size=20, max_size=20).map(address_from_payload) | st.from_regex(r"[0-9a-fA-F]{64}", fullmatch=True)
    if "pattern" in schema:
        return st.from_regex(schema["pattern"], fullmatch=True)
    return st.text(min_size=schema.get("minLength", 0), max_size=schema.get("maxLength", 64))


def as_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def conforms(doc: dict, schema: dict, value, where: str = "$") -> list[str]:
    """The ways `value` breaks `schema` (the OpenAPI 3.0 subset the document uses)."""
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if value is None:
        return [] if schema.get("nullable") or not schema.get("type") else [f"{where}: null"]
    if "oneOf" in schema:
        fits = [o for o in schema["oneOf"] if not conforms(doc, o, value, where)]
        return [] if len(fits) >= 1 else [f"{where}: matches none of oneOf"]
    kind = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int, "number": (int, float)}
    if kind and (not isinstance(value, types[kind]) or (kind in ("integer", "number") and isinstance(value, bool))):
        return [f"{where}: expected {kind}, got {type(value).__name__}"]
    problems = []
    if kind == "string" and "pattern" in schema and not re.search(schema["pattern"], value):
        problems.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: {value!r} not in {schema['enum']}")
    if kind == "object":
        for name in schema.get("required", []):
            if name not in value:
                problems.append(f"{where}.{name}: missing")
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                problems += conforms(doc, sub, value[name], f"{where}.{name}")
    if kind == "array":
        for i, item in enumerate(value):
            problems += conforms(doc, schema.get("items", {}), item, f"{where}[{i}]")
    return problems


# the core and market paths; an extension's paths join this list once its document
# states its real constraints
FUZZED_PATHS = set(core_openapi.PATHS) | set(market_api.OPENAPI_PATHS) | set(gov_api.OPENAPI_PATHS)


def get_operations(doc) -> list[tuple[str, dict]]:
    return sorted((path, op["get"]) for path, op in doc["paths"].items() if "get" in op and path in FUZZED_PATHS)


def cross_parameter_rules(path: str, params: dict) -> None:
    """The two rules OpenAPI 3.0 cannot state, which the document describes in words."""
    if path == "/v1/leases":
        params.pop("tenant" if "provider" in params else "provider", None)
    if path == "/v1/attestations" and params.get("subject_type") == "listing":
        params["subject"] = str(abs(hash(params["subject"])) % 1000 + 1)


@FUZZ
@given(data=st.data())
def test_valid_parameters_are_never_rejected(served, data):
    nt, port, doc = served
    path, op = data.draw(st.sampled_from(get_operations(doc)), label="operation")
    url, query = path, {}
    for p in op.get("parameters", []):
        if p["in"] == "path":
            value = as_text(data.draw(strategy(p["schema"]), label=p["name"]))
            url = url.replace("{" + p["name"] + "}", urllib.parse.quote(value, safe=""))
        elif p.get("required") or data.draw(st.booleans(), label=f"give {p['name']}"):
            query[p["name"]] = as_text(data.draw(strategy(p["schema"]), label=p["name"]))
    cross_parameter_rules(path, query)
    if path == "/v1/leases" and not ({"tenant", "provider"} & set(query)):
        query["provider"] = "org1"
    full = url + ("?" + urllib.parse.urlencode(query) if query else "")
    status, body = request(port, "GET", full)
    assert status not in (400, 500), (full, body)
    assert str(status) in op["responses"], (full, status, body)
    if status >= 400:
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    declared = op["responses"][str(status)].get("content", {}).get("application/json")
    if declared is not None:
        assert conforms(doc, declared["schema"], body) == [], full


def test_status_and_validators_answers_match_their_schemas(served):
    nt, port, doc = served
    for path in ("/v1/status", "/v1/validators", "/v1/evidence"):
        status, body = request(port, "GET", path)
        schema = doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert status == 200 and conforms(doc, schema, body) == [], path


b64 = st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode())
submissions = st.one_of(st.fixed_dictionaries({"tx": b64}), st.fixed_dictionaries({"txs": st.lists(b64, min_size=1,
                                                                                                    max_size=5)}))


@FUZZ
@given(body=submissions)
def test_submissions_of_the_documented_shape_get_declared_answers(served, body):
    nt, port, doc = served
    status, out = request(port, "POST", "/v1/txs", json.dumps(body).encode())
    declared = doc["paths"]["/v1/txs"]["post"]["responses"]
    assert str(status) in declared and status != 500, (status, out)
    if "txs" in body:
        assert status == 200 and len(out["results"]) == len(body["txs"])
    elif status >= 400:
        assert set(out) == {"error"}, out
        assert nt.node.chain.height == 0  # garbage changed nothing
