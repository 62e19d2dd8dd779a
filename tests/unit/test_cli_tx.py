"""`cxl tx …` / `cxl account show` against a stub node API, and offline signing round trips."""

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import pytest
from click.testing import CliRunner

from cli.main import cli
from ledger.keystore import write_key
from ledger.crypto import Signer
from ledger.tx import decode_tx
from ledger.crypto import address_from_payload

TO = address_from_payload(b"\xab" * 20)


class StubNode:
    """Just enough of the node API: status, accounts, POST /v1/txs, GET /v1/txs/{hash}."""

    def __init__(self):
        self.chain_id = "stub-chain"
        self.nonce = 7
        self.receipt = {"code": "ok", "message": "", "result": {"to": TO, "amount": 5}}
        self.refuse = None  # (status, code, message)
        self.txs: dict[str, bytes] = {}
        self.simulation = None  # POST /v1/txs/simulate answers this; None: 404, as a node without dry runs
        self.simulated: list[bytes] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                path = urlparse(self.path).path
                if path == "/v1/status":
                    return self._send(200, {"chain_id": stub.chain_id, "height": 11, "view": 0, "validators": [],
                                            "mempool": {"txs": 0, "bytes": 0}, "peers": []})
                if path.startswith("/v1/accounts/"):
                    addr = path.rsplit("/", 1)[1]
                    return self._send(200, {"address": addr, "balance": 100, "nonce": stub.nonce, "member": None})
                m = re.fullmatch(r"/v1/txs/([0-9a-f]{64})", path)
                if m and m.group(1) in stub.txs:
                    stx = decode_tx(stub.txs[m.group(1)])
                    return self._send(200, {"hash": m.group(1), "status": "committed", "height": 12, "index": 3,
                                            "block_hash": "cd" * 32,
                                            "tx": {"type": stx.tx.type, "nonce": stx.tx.nonce,
                                                   "sender_address": stx.tx.sender_address},
                                            "receipt": stub.receipt})
                return self._send(404, {"error": {"code": "not_found", "message": "no such thing"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if urlparse(self.path).path == "/v1/txs/simulate":
                    if stub.simulation is None:
                        return self._send(404, {"error": {"code": "not_found", "message": "no such endpoint"}})
                    stub.simulated.append(base64.b64decode(body["tx"]))
                    answer = stub.simulation
                    if callable(answer):  # an answer that depends on the transaction
                        answer = answer(decode_tx(stub.simulated[-1]))
                    return self._send(200, {"hash": "ab" * 32, "height": 12, "time_ms": 1, "stage": "execution",
                                            **answer})
                if stub.refuse:
                    status, code, message = stub.refuse
                    return self._send(status, {"error": {"code": code, "message": message}})
                raw = base64.b64decode(body["tx"])
                stx = decode_tx(raw)
                stub.txs[stx.hash.hex()] = raw
                return self._send(202, {"hash": stx.hash.hex(), "status": "pending"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def node():
    stub = StubNode()
    yield stub
    stub.close()


@pytest.fixture
def key(tmp_path):
    signer = Signer.generate()
    path = tmp_path / "k.json"
    write_key(path, signer, name="k")
    return path, signer


def run(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


def test_sign_only_offline_round_trips_through_decode(key, tmp_path):
    path, signer = key
    r = run("tx", "transfer", "--key", path, "--to", TO, "--amount", 5, "--memo", "hi", "--sign-only",
            "--nonce", 4, "--chain-id", "offline-chain", "--expiry", 99, "--node", "http://127.0.0.1:9")
    assert r.exit_code == 0, r.output
    stx = decode_tx(base64.b64decode(r.stdout.strip()))
    assert stx.verify_signature()
    t = stx.tx
    assert (t.chain_id, t.nonce, t.type, t.expiry) == ("offline-chain", 4, "transfer", 99)
    assert t.sender == signer.public_key and t.payload == {"to": TO, "amount": 5, "memo": "hi"}
    d = run("tx", "decode", "-", input=r.stdout)
    info = json.loads(d.stdout)
    assert info["hash"] == stx.hash.hex() and info["signature_valid"] is True and info["sender"] == signer.address


def test_sign_only_offline_without_nonce_says_what_to_give(key):
    r = run("tx", "transfer", "--key", key[0], "--to", TO, "--amount", 5, "--sign-only", "--chain-id", "c",
            "--node", "http://127.0.0.1:9")
    assert r.exit_code == 1 and "--nonce" in r.stderr and "Traceback" not in r.output


def test_sign_only_fetches_chain_and_nonce_from_a_node(key, node):
    r = run("tx", "transfer", "--key", key[0], "--to", TO, "--amount", 5, "--sign-only", "--json", "--node", node.url)
    info = json.loads(r.stdout)
    assert info["chain_id"] == "stub-chain" and info["nonce"] == 7
    assert not node.txs  # nothing was sent


def test_transfer_waits_and_reports_where_it_landed(key, node):
    r = run("tx", "transfer", "--key", key[0], "--to", TO, "--amount", 5, "--node", node.url)
    assert r.exit_code == 0, r.output
    assert "committed in block 12 (index 3): ok" in r.stdout
    (raw,) = node.txs.values()
    assert decode_tx(raw).tx.nonce == 7


def test_failed_receipt_exits_1_with_code_and_message(key, node):
    node.receipt = {"code": "insufficient_funds", "message": "balance 3 is less than 5", "result": {}}
    r = run("tx", "transfer", "--key", key[0], "--to", TO, "--amount", 5, "--node", node.url)
    assert r.exit_code == 1
    assert "failed: insufficient_funds: balance 3 is less than 5" in r.stdout


def test_refused_transaction_shows_the_api_error(key, node):
    node.refuse = (409, "nonce_used", "nonce 7 is already used")
    r = run("tx", "transfer", "--key", key[0], "--to", TO, "--amount", 5, "--node", node.url)
    assert r.exit_code == 1
    assert "nonce 7 is already used" in r.stderr and "nonce_used" in r.stderr


def test_no_wait_and_json(key, node):
    r = run("tx", "transfer", "--key", key[0], "--to", TO, "--amount", 5, "--node", node.url, "--no-wait", "--json")
    assert json.loads(r.stdout)["status"] == "pending"
    r = run("tx", "transfer", "--key", key[0], "--to", TO, "--amount", 5, "--node", node.url, "--json")
    rec = json.loads(r.stdout)
    assert rec["status"] == "committed" and rec["receipt"]["code"] == "ok"


def test_submit_a_presigned_file_then_show_it(key, node, tmp_path):
    signed = run("tx", "transfer", "--key", key[0], "--to", TO, "--amount", 5, "--sign-only", "--json",
                 "--node", node.url)
    f = tmp_path / "tx.json"
    f.write_text(signed.stdout)  # the JSON form is accepted as well as bare base64
    r = run("tx", "submit", f, "--node", node.url)
    assert r.exit_code == 0 and "committed in block 12" in r.stdout
    h = json.loads(signed.stdout)["hash"]
    show = run("tx", "show", h, "--node", node.url)
    assert "committed in block 12 (index 3): ok" in show.stdout and "transfer" in show.stdout
    missing = run("tx", "show", "ee" * 32, "--node", node.url)
    assert missing.exit_code == 1 and "knows no transaction" in missing.stderr
    assert run("tx", "show", "xyz", "--node", node.url).exit_code == 2
    garbage = tmp_path / "garbage"
    garbage.write_text("aGVsbG8=")
    r = run("tx", "submit", garbage, "--node", node.url)
    assert r.exit_code == 1 and "does not hold a signed cxl transaction" in r.stderr


def test_account_show(node, key):
    r = run("account", "show", TO, "--node", node.url, "--json")
    assert json.loads(r.stdout) == {"address": TO, "balance": 100, "nonce": 7, "member": None}
    r = run("account", "show", key[0], "--node", node.url)  # a key file stands for its address
    assert key[1].address in r.stdout and "not a member" in r.stdout


def test_unreachable_node_says_how_to_start_one(key):
    r = run("account", "show", TO, "--node", "http://127.0.0.1:9")
    assert r.exit_code == 1
    assert "is the node running at http://127.0.0.1:9" in r.stderr and "cxl node start --home" in r.stderr
    r = run("status", "--node", "http://127.0.0.1:9")
    assert r.exit_code == 1 and "Traceback" not in r.output


def test_governance_payloads(key):
    common = ["--key", key[0], "--sign-only", "--nonce", 0, "--chain-id", "c", "--json"]
    r = run("tx", "propose", "mint", "--arg", f"to={TO}", "--arg", "amount=1000", *common)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["payload"] == {"action": "mint", "args": {"to": TO, "amount": 1000}}
    r = run("tx", "propose", "set_param", "--arg", "name=block_interval_ms", "--arg", "value=250",
            "--expires-in", 10, *common)
    assert json.loads(r.stdout)["payload"] == {"action": "set_param", "expires_in": 10,
                                               "args": {"name": "block_interval_ms", "value": 250}}
    bad = run("tx", "propose", "mint", "--arg", "to=nobody", "--arg", "amount=1", *common)
    assert bad.exit_code == 2 and "--arg" in bad.stderr
    bad = run("tx", "propose", "mint", "--arg", "amount", *common)
    assert bad.exit_code == 2
    v = run("tx", "vote", 3, "--no", *common)
    assert json.loads(v.stdout)["payload"] == {"proposal": 3, "approve": False}
    assert run("tx", "vote", 3, *common).exit_code == 2


SIM_OK = {"ok": True, "code": "ok", "message": "", "result": {"to": TO, "amount": 5}}
SIM_FAIL = {"ok": False, "code": "insufficient_funds", "message": "balance 3 is less than 5", "result": {}}


def test_dry_run_prints_the_receipt_and_sends_nothing(key, node):
    node.simulation = SIM_OK
    r = run("tx", "transfer", "--key", key[0], "--to", TO, "--amount", 5, "--node", node.url, "--dry-run")
    assert r.exit_code == 0, r.output
    assert "dry run at height 12: ok (amount=5, to=" in r.stdout and "nothing was sent" in r.stdout
    assert node.txs == {} and decode_tx(node.simulated[0]).tx.nonce == 7
    r = run("tx", "transfer", "--key", key[0], "--to", TO, "--amount", 5, "--node", node.url, "--dry-run", "--json")
    out = json.loads(r.stdout)
    assert out["dry_run"] is True and out["ok"] is True and out["result"]["amount"] == 5
    assert node.txs == {}


def test_dry_run_of_a_failing_transaction_exits_1(key, node):
    node.simulation = SIM_FAIL
    r = run("tx", "transfer", "--key", key[0], "--to", TO, "--amount", 5, "--node", node.url, "--dry-run")
    assert r.exit_code == 1
    assert "would fail: insufficient_funds: balance 3 is less than 5" in r.stdout
    assert node.txs == {}


def test_send_refuses_what_the_dry_run_says_would_fail_unless_forced(key, node):
    node.simulation = SIM_FAIL
    r = run("tx", "transfer", "--key", key[0], "--to", TO, "--amount", 5, "--node", node.url)
    assert r.exit_code == 1
    assert "not sent" in r.stderr and "insufficient_funds: balance 3 is less than 5" in r.stderr
    assert "--force" in r.stderr
    assert node.txs == {}, "nothing may reach POST /v1/txs"
    r = run("tx", "transfer", "--key", key[0], "--to", TO, "--amount", 5, "--node", node.url, "--force")
    assert r.exit_code == 0, r.output
    assert len(node.txs) == 1
    assert len(node.simulated) == 1, "--force skips the dry run"


def test_send_after_a_good_dry_run(key, node):
    node.simulation = SIM_OK
    r = run("tx", "transfer", "--key", key[0], "--to", TO, "--amount", 5, "--node", node.url)
    assert r.exit_code == 0, r.output
    assert len(node.simulated) == 1 and list(node.txs.values()) == node.simulated


def test_failed_proposal_and_preview_are_refusals(key, node):
    node.simulation = {"ok": False, "code": "ok", "message": "",
                       "result": {"proposal": 3, "status": "failed", "reason": "actions[1] add_member: member_exists: x"}}
    r = run("tx", "vote", "3", "--yes", "--key", key[0], "--node", node.url)
    assert r.exit_code == 1 and "proposal 3 would be executed and fail: actions[1] add_member" in r.stderr
    node.simulation = {"ok": False, "code": "ok", "message": "", "result": {"proposal": 4, "status": "open"},
                       "preview": {"reason": "actions[0] add_org: org_exists: organisation x exists",
                                   "error_code": "org_exists", "failed_action": 0}}
    r = run("tx", "vote", "4", "--yes", "--key", key[0], "--node", node.url)
    assert r.exit_code == 1 and "proposal 4 would fail if approved now: actions[0] add_org" in r.stderr
    assert node.txs == {}


def test_dry_run_needs_a_node_that_offers_it(key, node):
    r = run("tx", "transfer", "--key", key[0], "--to", TO, "--amount", 5, "--node", node.url, "--dry-run")
    assert r.exit_code == 1 and "does not offer dry runs" in r.stderr
    assert node.txs == {}


def test_dry_run_and_sign_only_exclude_each_other(key, node):
    r = run("tx", "transfer", "--key", key[0], "--to", TO, "--amount", 5, "--node", node.url, "--dry-run",
            "--sign-only")
    assert r.exit_code == 2 and "--sign-only and --dry-run" in r.stderr


def test_submit_a_presigned_file_dry_run(key, node, tmp_path):
    signed = run("tx", "transfer", "--key", key[0], "--to", TO, "--amount", 5, "--sign-only", "--node", node.url)
    path = tmp_path / "tx.b64"
    path.write_text(signed.stdout)
    node.simulation = SIM_FAIL
    r = run("tx", "submit", path, "--node", node.url)
    assert r.exit_code == 1 and "not sent" in r.stderr and node.txs == {}
    r = run("tx", "submit", path, "--node", node.url, "--dry-run")
    assert r.exit_code == 1 and "would fail" in r.stdout
    r = run("tx", "submit", path, "--node", node.url, "--force")
    assert r.exit_code == 0 and len(node.txs) == 1


# -- local nonce reservation (cli/nonces.py) --------------------------------------------------

def _sent_nonces(node) -> list[int]:
    return sorted(decode_tx(raw).tx.nonce for raw in node.txs.values())


def test_sends_record_the_next_nonce_so_a_lagging_node_is_not_trusted(key, node):
    for amount in (1, 2):  # the stub node keeps saying 7, as a node gossip has not reached yet would
        r = run("tx", "transfer", "--key", key[0], "--to", TO, "--amount", amount, "--node", node.url, "--no-wait")
        assert r.exit_code == 0, r.output
    assert _sent_nonces(node) == [7, 8]


def test_a_refused_send_uses_no_nonce(key, node):
    node.refuse = (409, "nonce_conflict", "taken")
    assert run("tx", "transfer", "--key", key[0], "--to", TO, "--amount", 1, "--node", node.url).exit_code == 1
    node.refuse = None
    assert run("tx", "transfer", "--key", key[0], "--to", TO, "--amount", 1, "--node", node.url).exit_code == 0
    assert _sent_nonces(node) == [7]


def test_a_recorded_nonce_ahead_of_the_chain_is_dropped_and_the_node_trusted(key, node):
    assert run("tx", "transfer", "--key", key[0], "--to", TO, "--amount", 1, "--node", node.url).exit_code == 0
    node.txs.clear()  # as if that transaction (nonce 7) had been dropped from every mempool
    node.simulation = lambda stx: ({"ok": True, "code": "ok", "message": "", "result": {}} if stx.tx.nonce == 7 else
                                   {"ok": False, "code": "nonce_gap", "message": "held until 7 arrives", "result": {}})
    r = run("tx", "transfer", "--key", key[0], "--to", TO, "--amount", 2, "--node", node.url)
    assert r.exit_code == 0, r.output
    assert [decode_tx(raw).tx.nonce for raw in node.simulated] == [8, 7]  # tried the record, then the node's
    assert _sent_nonces(node) == [7]


def test_explicit_nonce_and_sign_only_leave_the_record_alone(key, node, tmp_path, monkeypatch):
    monkeypatch.setenv("CXL_NONCE_DIR", str(tmp_path / "nonces"))
    assert run("tx", "transfer", "--key", key[0], "--to", TO, "--amount", 1, "--node", node.url, "--nonce", 7,
               "--no-wait").exit_code == 0
    assert run("tx", "transfer", "--key", key[0], "--to", TO, "--amount", 1, "--node", node.url,
               "--sign-only").exit_code == 0
    assert not (tmp_path / "nonces").exists()
