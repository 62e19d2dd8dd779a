"""Several `cxl tx transfer` processes with one key, started at once against a real node,
all succeed: each reserves its nonce under the key's local lock (cli/nonces.py). Before,
they all asked the node for the same pending nonce and all but one failed with
``nonce_conflict``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from genesis.testnet import make_testnet
from ledger.keystore import write_key
from nodethread import cxl, start_single_validator

NET = make_testnet(n_orgs=4, n_validators=1, chain_id="cxl-parallel-nonces")
PROCESSES = 6
CXL = Path(sys.executable).parent / "cxl"


@pytest.fixture
def node(tmp_path, monkeypatch):
    write_key(tmp_path / "admin.json", NET.admins["org1"])
    thread = start_single_validator(NET, tmp_path)
    monkeypatch.setenv("CXL_NODE", thread.url)
    monkeypatch.setenv("CXL_GENESIS", str(tmp_path / "genesis.json"))  # reads and commits verified
    try:
        yield tmp_path
    finally:
        thread.stop()


def _spawn(node: Path, amount: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([str(CXL), "tx", "transfer", "--key", str(node / "admin.json"), "--amount", str(amount),
                             "--to", NET.operators["org2"].address, "--json", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))


@pytest.mark.skipif(not CXL.exists(), reason="the cxl entry point is not installed in this environment")
@pytest.mark.parametrize("wait", [True, False], ids=["wait", "no-wait"])
def test_parallel_sends_with_one_key_all_succeed(node, wait):
    sender = NET.admins["org1"].address
    start = json.loads(cxl("account", "show", sender, "--json"))["nonce"]
    procs = [_spawn(node, 1 + i, *([] if wait else ["--no-wait"])) for i in range(PROCESSES)]
    outcomes = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        outcomes.append((p.returncode, out, err))
    failed = [(rc, err) for rc, _, err in outcomes if rc != 0]
    assert not failed, f"{len(failed)} of {PROCESSES} parallel sends failed: {failed}"
    hashes = {json.loads(out)["hash"] for _, out, _ in outcomes}
    assert len(hashes) == PROCESSES
    # every one is committed with its own nonce, none skipped
    records = [json.loads(cxl("tx", "show", h, "--wait", 30, "--json")) for h in hashes]
    assert all(r["status"] == "committed" and r["receipt"]["code"] == "ok" for r in records)
    account = json.loads(cxl("account", "show", sender, "--json"))
    assert account["nonce"] == start + PROCESSES
