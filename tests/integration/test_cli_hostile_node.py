"""The CLI against a hostile node: crafted answers are reported as a malformed answer
from that node (exit 1, one line), never a traceback."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from audit.testchain import build_test_chain
from cli.main import cli
from genesis.schema import save as save_genesis
from node.views import proof_view


@pytest.fixture(scope="module")
def bc():
    return build_test_chain(blocks=3)


class Hostile:
    """An HTTP server answering every GET with `self.body` (bytes) as application/json."""

    def __init__(self):
        self.body = b"{}"
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile():
    h = Hostile()
    yield h
    h.close()


def run(*args) -> tuple[int, str]:
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r.exit_code, r.output


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize("field,value", [
    ("receipt_bytes", "90"), ("header_raw", b64(b"\x90")), ("certificate_raw", b64(b"\x90")), ("tx", "90"),
    ("tx_proof", 7), ("header_raw", None), ("height", [1]),
])
def test_audit_receipt_from_a_node_sending_crafted_proofs(bc, hostile, tmp_path, field, value):
    save_genesis(bc.net.doc, tmp_path / "genesis.json")
    proof = json.loads(json.dumps(proof_view(bc.chain.tx_proof(bc.tx_hashes[0]), bc.tx_hashes[0])))
    proof[field] = value
    if field == "header_raw" and value is None:
        proof["header"] = {"bytes": 5}
    hostile.body = json.dumps(proof).encode()
    code, out = run("audit", "receipt", bc.tx_hashes[0].hex(), "--genesis", tmp_path / "genesis.json",
                    "--node", hostile.url)
    assert code == 1, out
    assert "sent a malformed answer" in out and hostile.url in out and "Traceback" not in out


def test_audit_receipt_from_a_genuine_proof_still_works(bc, hostile, tmp_path):
    save_genesis(bc.net.doc, tmp_path / "genesis.json")
    hostile.body = json.dumps(proof_view(bc.chain.tx_proof(bc.tx_hashes[0]), bc.tx_hashes[0])).encode()
    code, out = run("audit", "receipt", bc.tx_hashes[0].hex(), "--genesis", tmp_path / "genesis.json",
                    "--node", hostile.url)
    assert code == 0 and json.loads(out)["tx_hash"] == bc.tx_hashes[0].hex()


@pytest.mark.parametrize("body", [b"[]", b"3", b"\"x\"", b"not json", b"[" * 100_000])
def test_cli_commands_report_non_object_answers_as_malformed(hostile, body):
    hostile.body = body
    for args in (["status"], ["block", "show", "1"]):
        code, out = run(*args, "--node", hostile.url)
        assert code == 1, out
        assert "malformed answer" in out and "Traceback" not in out


def test_verify_receipt_of_a_deeply_nested_file_is_one_line(bc, tmp_path):
    save_genesis(bc.net.doc, tmp_path / "genesis.json")
    (tmp_path / "r.json").write_text("[" * 100_000 + "]" * 100_000)
    code, out = run("audit", "verify-receipt", tmp_path / "r.json", "--genesis", tmp_path / "genesis.json")
    assert code == 1 and "cannot read" in out and "Traceback" not in out


@pytest.mark.parametrize("args", [["listing", "list"], ["lease", "list", "--provider", "org1"]])
def test_answers_missing_fields_are_reported_as_malformed(hostile, args):
    hostile.body = b'{"height": 3}'  # no items, no next_cursor
    code, out = run(*args, "--node", hostile.url)
    assert code == 1, out
    assert "malformed answer" in out and "'items'" in out and "Traceback" not in out
