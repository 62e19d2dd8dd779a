"""Tampering with a node's LevelDB: replay must fail and name the height and the cause.

One chain (30 blocks, transfers, validator 4 added at block 5 and validator 0 removed at
block 15, so new sets decide from heights 7 and 17) is built once; each test tampers a
copy of its database directly through plyvel and replays it the way `cxl audit replay
--home` does.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import plyvel
import pytest
from click.testing import CliRunner

from audit.replay import replay
from audit.source import SourceError, open_home
from audit.testchain import build_test_chain, validator_signer
from cli.audit import audit_group
from genesis.schema import save as save_genesis
from ledger.block import Block, Certificate, commit_signing_bytes
from ledger.chain import h8
from ledger.crypto import Signer
from ledger.encoding import decode, encode, sha256
from ledger.store.base import PREFIX_BLOCK, PREFIX_CERT, PREFIX_STATE
from ledger.store.leveldb import LevelDBStore

CHAIN_ID = "cxl-audit"
HEAD = 30


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("chain")
    (base / "home").mkdir()
    store = LevelDBStore(base / "home" / "data")
    bc = build_test_chain(store, blocks=HEAD, chain_id=CHAIN_ID)
    store.close()
    save_genesis(bc.net.doc, base / "genesis.json")
    return base, bc


@pytest.fixture
def home(built, tmp_path):
    base, _ = built
    shutil.copytree(base / "home", tmp_path / "home")
    return tmp_path / "home"


def run(home: Path, bc, workers: int = 1):
    with open_home(home) as source:
        return replay(source, bc.net.doc, bc.net.genesis_hash, workers=workers)


def tamper(home: Path):
    return plyvel.DB(str(home / "data"))


def flip(db, key: bytes, offset: int) -> None:
    value = bytearray(db.get(key))
    value[offset] ^= 0x01
    db.put(key, bytes(value))


def sign_cert(block_height: int, block_hash: bytes, signers: list[Signer]) -> bytes:
    msg = commit_signing_bytes(CHAIN_ID, 0, block_height, block_hash)
    return Certificate.build(block_height, 0, block_hash, {s.public_key: s.sign(msg) for s in signers}).encode()


def assert_fails(report, height: int, code: str):
    assert not report.ok
    assert (report.failure.height, report.failure.code) == (height, code), report.text()


# --- the untampered chain ------------------------------------------------------------------


def test_untampered_chain_verifies_without_changing_the_database(home, built):
    """Replay issues no write. (LevelDB itself turns its recovery log into a table file when
    any process opens the database, as the node does at its next start: same keys and values.)"""
    _, bc = built

    def digest():
        with tamper(home) as db:
            return hashlib.sha256(b"".join(k + b"\0" + v for k, v in db)).hexdigest()

    before = digest()
    report = run(home, bc, workers=2)
    assert report.ok, report.text()
    assert (report.blocks, report.transactions) == (HEAD, len(bc.tx_hashes))
    assert [c.height for c in report.validator_changes] == [7, 17]
    assert len(report.validators_seen) == 5
    assert digest() == before


def test_cli_replay_home_json(home, built):
    base, bc = built
    out = CliRunner().invoke(audit_group, ["replay", "--genesis", str(base / "genesis.json"), "--home", str(home),
                                           "--json", "--workers", "2"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["ok"] and data["blocks"] == HEAD and data["transactions"] == len(bc.tx_hashes)
    assert data["failure"] is None and data["tx_per_s"] > 0


# --- tampering ---------------------------------------------------------------------------------


def test_flipped_byte_in_a_stored_block(home, built):
    _, bc = built
    with tamper(home) as db:
        raw = db.get(PREFIX_BLOCK + h8(12))
        root = Block.decode(raw).header.state_root
        flip(db, PREFIX_BLOCK + h8(12), raw.index(root) + 5)
    report = run(home, bc)
    assert_fails(report, 12, "bad_state_root")
    assert report.failure.got != report.failure.expected


def test_flipped_byte_in_a_transaction(home, built):
    _, bc = built
    with tamper(home) as db:
        raw = db.get(PREFIX_BLOCK + h8(9))
        tx = Block.decode(raw).txs[1]
        flip(db, PREFIX_BLOCK + h8(9), raw.index(tx) + len(tx) - 3)  # inside its signature
    assert_fails(run(home, bc), 9, "bad_txs_root")


def test_flipped_byte_in_a_certificate_signature(home, built):
    _, bc = built
    with tamper(home) as db:
        flip(db, PREFIX_CERT + h8(21), len(db.get(PREFIX_CERT + h8(21))) - 1)
    report = run(home, bc)
    assert_fails(report, 21, "cert_bad_signature")
    assert "stored certificate of block 21" in report.failure.message


def test_flipped_byte_in_the_certificate_carried_by_the_next_block(home, built):
    _, bc = built
    with tamper(home) as db:
        raw = db.get(PREFIX_BLOCK + h8(22))
        sig = Block.decode(raw).last_cert.signatures[0][1]
        flip(db, PREFIX_BLOCK + h8(22), raw.index(sig))
    assert_fails(run(home, bc), 22, "bad_last_cert")


def test_flipped_byte_in_a_state_value(home, built):
    _, bc = built
    address = bc.net.operators["org2"].address
    with tamper(home) as db:
        key = PREFIX_STATE + b"bal/" + address.encode()
        flip(db, key, len(db.get(key)) - 1)
    report = run(home, bc)
    assert_fails(report, HEAD, "state_mismatch")
    assert address in report.failure.message


def test_dropped_block(home, built):
    _, bc = built
    with tamper(home) as db:
        db.delete(PREFIX_BLOCK + h8(13))
    assert_fails(run(home, bc), 13, "missing_block")


def test_swapped_transactions(home, built):
    _, bc = built
    with tamper(home) as db:
        block = Block.decode(db.get(PREFIX_BLOCK + h8(20)))
        txs = list(block.txs)
        txs[0], txs[1] = txs[1], txs[0]
        db.put(PREFIX_BLOCK + h8(20), Block(block.header, tuple(txs), block.last_cert).encode())
    assert_fails(run(home, bc), 20, "bad_txs_root")


def test_certificate_with_too_few_signers(home, built):
    _, bc = built
    with tamper(home) as db:
        block = Block.decode(db.get(PREFIX_BLOCK + h8(25)))
        db.put(PREFIX_CERT + h8(25), sign_cert(25, block.hash, [validator_signer(CHAIN_ID, 1), validator_signer(CHAIN_ID, 2)]))
    report = run(home, bc)
    assert_fails(report, 25, "cert_no_quorum")
    assert (report.failure.expected, report.failure.got) == (3, 2)


def test_certificate_signed_by_a_removed_validator(home, built):
    """Validator 0 left the set at height 17: its signature no longer counts."""
    _, bc = built
    with tamper(home) as db:
        block = Block.decode(db.get(PREFIX_BLOCK + h8(18)))
        db.put(PREFIX_CERT + h8(18), sign_cert(18, block.hash, [validator_signer(CHAIN_ID, i) for i in (0, 1, 2)]))
    report = run(home, bc)
    assert_fails(report, 18, "cert_unknown_signer")
    assert validator_signer(CHAIN_ID, 0).public_key.hex() in report.failure.message


def test_certificate_signed_by_a_validator_not_yet_added(home, built):
    """Validator 4 decides only from height 7: at height 6 it is not a validator yet."""
    _, bc = built
    with tamper(home) as db:
        block = Block.decode(db.get(PREFIX_BLOCK + h8(6)))
        db.put(PREFIX_CERT + h8(6), sign_cert(6, block.hash, [validator_signer(CHAIN_ID, i) for i in (1, 2, 4)]))
    assert_fails(run(home, bc), 6, "cert_unknown_signer")


def test_certificate_signed_by_an_outsider(home, built):
    _, bc = built
    outsider = Signer(sha256(b"not a validator"))
    with tamper(home) as db:
        block = Block.decode(db.get(PREFIX_BLOCK + h8(3)))
        db.put(PREFIX_CERT + h8(3), sign_cert(3, block.hash, [validator_signer(CHAIN_ID, i) for i in (1, 2)] + [outsider]))
    assert_fails(run(home, bc), 3, "cert_unknown_signer")


def test_chain_from_another_genesis(built, tmp_path):
    _, bc = built
    (tmp_path / "other").mkdir()
    store = LevelDBStore(tmp_path / "other" / "data")
    build_test_chain(store, blocks=3, chain_id=CHAIN_ID, balance=10**12 + 1)
    store.close()
    report = run(tmp_path / "other", bc)
    assert_fails(report, 0, "wrong_genesis")
    assert report.failure.expected == bc.net.genesis_hash


def test_tampered_receipt_index_names_its_height(home, built):
    _, bc = built
    with tamper(home) as db:
        key = b"r/" + h8(11) + (0).to_bytes(4, "big")
        code, message, result = decode(db.get(key))
        db.put(key, encode(["insufficient_funds", message, result]))
    report = run(home, bc)
    assert_fails(report, 11, "index_mismatch")


def test_truncated_head_record(home, built):
    """A head record rolled back one block: the store holds a block above its head."""
    _, bc = built
    with tamper(home) as db:
        head = decode(db.get(b"m/head"))
        prev = Block.decode(db.get(PREFIX_BLOCK + h8(HEAD)))
        db.put(b"m/head", encode([HEAD - 1, prev.header.parent_hash, head[2], head[3]]))
    report = run(home, bc)
    assert not report.ok and report.failure.height in (HEAD - 1, HEAD)


# --- opening the database ------------------------------------------------------------------------


def test_locked_database_says_what_to_do(home):
    with tamper(home):
        with pytest.raises(SourceError) as err:
            open_home(home)
    assert err.value.code == "store_locked"
    assert "Stop the node" in err.value.message and "--node" in err.value.message


def test_not_a_data_directory(tmp_path):
    with pytest.raises(SourceError) as err:
        open_home(tmp_path)
    assert err.value.code == "no_database"


def test_cli_reports_failure_with_exit_1(home, built):
    base, _ = built
    with tamper(home) as db:
        db.delete(PREFIX_BLOCK + h8(13))
    out = CliRunner().invoke(audit_group, ["replay", "--genesis", str(base / "genesis.json"), "--home", str(home)])
    assert out.exit_code == 1
    assert "FAILED at height 13: missing_block" in out.output
