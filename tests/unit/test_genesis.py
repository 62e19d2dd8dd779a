"""Genesis validation: every bad field is a GenesisError that names the field."""

from __future__ import annotations

import copy
import json

import pytest

from genesis import schema
from genesis.testnet import make_testnet
from ledger import accounts
from ledger.crypto import Signer
from ledger.encoding import encode, sha256
from ledger.errors import GenesisError
from ledger.store.memory import MemoryStore
from ledger.chain import Chain

K = [Signer(sha256(b"g%d" % i)).public_key.hex() for i in range(6)]


def base() -> dict:
    return {
        "chain_id": "cxl-local",
        "genesis_time_ms": 1_764_115_200_000,
        "params": {"block_interval_ms": 200},
        "orgs": [
            {"id": "acme", "name": "Acme DC", "members": [{"key": K[0], "role": "admin"},
                                                         {"key": K[1], "role": "operator"}]},
            {"id": "beta", "name": "Beta", "members": [{"key": K[2], "role": "admin"}]},
        ],
        "validators": [{"org": "acme", "key": K[3], "p2p": "http://127.0.0.1:26601", "api": "http://127.0.0.1:26701"}],
        "balances": [{"address": Signer(sha256(b"g0")).address, "amount": 1000}],
    }


def setter(path, value):
    def apply(doc):
        target = doc
        for p in path[:-1]:
            target = target[p]
        target[path[-1]] = value
    return apply


def deleter(path):
    def apply(doc):
        target = doc
        for p in path[:-1]:
            target = target[p]
        del target[path[-1]]
    return apply


CASES = [
    # (id, mutation, field named in the message)
    ("unknown top field", setter(["extra"], 1), "extra"),
    ("chain_id missing", deleter(["chain_id"]), "chain_id"),
    ("chain_id empty", setter(["chain_id"], ""), "chain_id"),
    ("chain_id too long", setter(["chain_id"], "c" * 65), "chain_id"),
    ("chain_id space", setter(["chain_id"], "cxl local"), "chain_id"),
    ("chain_id newline", setter(["chain_id"], "cxl\n"), "chain_id"),
    ("chain_id int", setter(["chain_id"], 5), "chain_id"),
    ("time missing", deleter(["genesis_time_ms"]), "genesis_time_ms"),
    ("time negative", setter(["genesis_time_ms"], -1), "genesis_time_ms"),
    ("time float", setter(["genesis_time_ms"], 1.5), "genesis_time_ms"),
    ("time bool", setter(["genesis_time_ms"], True), "genesis_time_ms"),
    ("time string", setter(["genesis_time_ms"], "1"), "genesis_time_ms"),
    ("params list", setter(["params"], [1]), "params"),
    ("params unknown", setter(["params", "warp"], 1), "params.warp"),
    ("params out of range", setter(["params", "block_interval_ms"], 0), "params.block_interval_ms"),
    ("params bool", setter(["params", "time_skew_ms"], True), "params.time_skew_ms"),
    ("params str", setter(["params", "max_block_txs"], "5"), "params.max_block_txs"),
    ("threshold above one", setter(["params", "gov_threshold_num"], 4), "params.gov_threshold_num"),
    ("orgs missing", deleter(["orgs"]), "orgs"),
    ("orgs empty", setter(["orgs"], []), "orgs"),
    ("orgs dict", setter(["orgs"], {}), "orgs"),
    ("org not object", setter(["orgs", 1], "beta"), "orgs[1]"),
    ("org id missing", deleter(["orgs", 0, "id"]), "orgs[0].id"),
    ("org id upper", setter(["orgs", 0, "id"], "Acme"), "orgs[0].id"),
    ("org id newline", setter(["orgs", 0, "id"], "acme\n"), "orgs[0].id"),
    ("org id long", setter(["orgs", 0, "id"], "a" * 33), "orgs[0].id"),
    ("org id duplicate", setter(["orgs", 1, "id"], "acme"), "orgs[1].id"),
    ("org name empty", setter(["orgs", 0, "name"], ""), "orgs[0].name"),
    ("org name long", setter(["orgs", 0, "name"], "n" * 129), "orgs[0].name"),
    ("org name int", setter(["orgs", 1, "name"], 3), "orgs[1].name"),
    ("members empty", setter(["orgs", 0, "members"], []), "orgs[0].members"),
    ("members missing", deleter(["orgs", 1, "members"]), "orgs[1].members"),
    ("member not object", setter(["orgs", 0, "members", 1], K[4]), "orgs[0].members[1]"),
    ("member key short", setter(["orgs", 0, "members", 1, "key"], "ab"), "orgs[0].members[1].key"),
    ("member key upper", setter(["orgs", 0, "members", 1, "key"], K[4].upper()), "orgs[0].members[1].key"),
    ("member key bytes-ish", setter(["orgs", 0, "members", 1, "key"], [1, 2]), "orgs[0].members[1].key"),
    ("member key duplicate in org", setter(["orgs", 0, "members", 1, "key"], K[0]), "orgs[0].members[1].key"),
    ("member key in two orgs", setter(["orgs", 1, "members", 0, "key"], K[1]), "orgs[1].members[0].key"),
    ("member role bad", setter(["orgs", 0, "members", 1, "role"], "root"), "orgs[0].members[1].role"),
    ("member role list", setter(["orgs", 0, "members", 1, "role"], ["admin"]), "orgs[0].members[1].role"),
    ("org without admin", setter(["orgs", 1, "members", 0, "role"], "auditor"), "orgs[1].members"),
    ("validators missing", deleter(["validators"]), "validators"),
    ("validators empty", setter(["validators"], []), "validators"),
    ("validator not object", setter(["validators", 0], K[3]), "validators[0]"),
    ("validator org unknown", setter(["validators", 0, "org"], "gamma"), "validators[0].org"),
    ("validator org list", setter(["validators", 0, "org"], ["acme"]), "validators[0].org"),
    ("validator org map", setter(["validators", 0, "org"], {"id": "acme"}), "validators[0].org"),
    ("validator key bad", setter(["validators", 0, "key"], "zz"), "validators[0].key"),
    ("validator p2p bad", setter(["validators", 0, "p2p"], "tcp://1.2.3.4:5"), "validators[0].p2p"),
    ("validator p2p path", setter(["validators", 0, "p2p"], "http://h:1/x y"), "validators[0].p2p"),
    ("validator api missing", deleter(["validators", 0, "api"]), "validators[0].api"),
    ("balances not list", setter(["balances"], 5), "balances"),
    ("balances map", setter(["balances"], {"cx": 1}), "balances"),
    ("balance not object", setter(["balances", 0], "cx"), "balances[0]"),
    ("balance address bad", setter(["balances", 0, "address"], "cx12"), "balances[0].address"),
    ("balance address missing", deleter(["balances", 0, "address"]), "balances[0].address"),
    ("balance amount zero", setter(["balances", 0, "amount"], 0), "balances[0].amount"),
    ("balance amount huge", setter(["balances", 0, "amount"], 2**70), "balances[0].amount"),
    ("balance amount str", setter(["balances", 0, "amount"], "5"), "balances[0].amount"),
    # fields the schema does not know would be dropped by normalisation: two files, one hash
    ("org unknown field", setter(["orgs", 1, "website"], "x"), "orgs[1].website"),
    ("member unknown field", setter(["orgs", 0, "members", 1, "weight"], 2), "orgs[0].members[1].weight"),
    ("validator unknown field", setter(["validators", 0, "power"], 10), "validators[0].power"),
    ("balance unknown field", setter(["balances", 0, "memo"], "hi"), "balances[0].memo"),
]


def test_base_document_is_valid():
    doc = schema.validate(base())
    assert doc["chain_id"] == "cxl-local" and len(doc["orgs"]) == 2


@pytest.mark.parametrize("name, mutate, field", CASES, ids=[c[0] for c in CASES])
def test_bad_field_named(name, mutate, field):
    doc = base()
    mutate(doc)
    with pytest.raises(GenesisError) as exc:
        schema.validate(doc)
    assert exc.value.message.startswith(field + ":"), exc.value.message
    assert exc.value.code == "bad_genesis"


def test_duplicate_validator_key():
    doc = base()
    doc["validators"].append(dict(doc["validators"][0]))
    with pytest.raises(GenesisError) as exc:
        schema.validate(doc)
    assert exc.value.message.startswith("validators[1].key:")


def test_duplicate_balance_address():
    doc = base()
    doc["balances"].append(dict(doc["balances"][0]))
    with pytest.raises(GenesisError) as exc:
        schema.validate(doc)
    assert exc.value.message.startswith("balances[1].address:")


def test_total_balances_must_fit():
    doc = base()
    doc["balances"] = [{"address": Signer(sha256(b"b%d" % i)).address, "amount": 2**62} for i in range(5)]
    with pytest.raises(GenesisError) as exc:
        schema.validate(doc)
    assert exc.value.message.startswith("balances:")


def test_not_an_object():
    for bad in ([], "x", None, 5):
        with pytest.raises(GenesisError) as exc:
            schema.validate(bad)
        assert exc.value.message.startswith("genesis:")


def test_validate_does_not_mutate_and_normalises():
    doc = base()
    doc["validators"][0]["p2p"] = "http://127.0.0.1:26601/"
    snapshot = copy.deepcopy(doc)
    out = schema.validate(doc)
    assert doc == snapshot
    assert out["validators"][0]["p2p"] == "http://127.0.0.1:26601"
    # validating the normalised form again is a fixed point with the same hash
    assert schema.validate(out) == out
    assert schema.genesis_hash(out) == sha256(encode(out))


def test_hash_changes_with_any_field():
    h0 = schema.genesis_hash(schema.validate(base()))
    for mutate in (setter(["chain_id"], "cxl-other"), setter(["genesis_time_ms"], 1),
                   setter(["balances", 0, "amount"], 1001), setter(["orgs", 1, "name"], "Beta2")):
        doc = base()
        mutate(doc)
        assert schema.genesis_hash(schema.validate(doc)) != h0


def test_save_and_load_round_trip(tmp_path):
    path = tmp_path / "genesis.json"
    h = schema.save(base(), path)
    doc, h2 = schema.load(path)
    assert h == h2 and doc == schema.validate(base())


def test_load_errors(tmp_path):
    with pytest.raises(GenesisError) as exc:
        schema.load(tmp_path / "missing.json")
    assert "cannot read" in exc.value.message
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(GenesisError) as exc:
        schema.load(bad)
    assert "not valid JSON" in exc.value.message and "line 1" in exc.value.message
    bad.write_text(json.dumps({**base(), "chain_id": ""}))
    with pytest.raises(GenesisError) as exc:
        schema.load(bad)
    assert exc.value.message.startswith("chain_id:")


def test_genesis_state(tmp_path):
    doc = schema.validate(base())
    chain = Chain(MemoryStore(), doc, schema.genesis_hash(doc))
    st = chain.state()
    assert accounts.supply(st) == 1000
    assert accounts.balance(st, Signer(sha256(b"g0")).address) == 1000
    assert accounts.member(st, schema.member_address(K[1]))["role"] == "operator"
    assert accounts.params(st)["block_interval_ms"] == 200
    assert accounts.params(st)["max_block_txs"] == 2000  # default filled in
    assert chain.validator_keys == [bytes.fromhex(K[3])]
    assert chain.height == 0 and chain.head.time_ms == doc["genesis_time_ms"]


def test_testnet_genesis_is_valid():
    net = make_testnet()
    assert schema.validate(net.doc) == net.doc


def test_unknown_nested_field_cannot_share_a_hash():
    """A file with an extra nested field is refused, never normalised to the plain file's hash."""
    plain = base()
    for path in (["orgs", 0, "x"], ["orgs", 0, "members", 0, "x"], ["validators", 0, "x"], ["balances", 0, "x"]):
        doc = copy.deepcopy(plain)
        setter(path, 1)(doc)
        with pytest.raises(GenesisError, match="unknown field"):
            schema.validate(doc)
