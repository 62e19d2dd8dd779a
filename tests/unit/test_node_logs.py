"""node.logs: JSON lines with the call's fields, size-based rotation."""

from __future__ import annotations

import json
import logging

from node.logs import JsonLines, file_handler, has_file_handler


def _record(msg="committed block %d", args=(7,), **extra):
    rec = logging.LogRecord("cxl.node.ab", logging.INFO, __file__, 1, msg, args, None)
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


def test_fields_from_extra_are_json_fields():
    out = json.loads(JsonLines().format(_record(height=7, hash=b"\x01\xff", peers=["a"], obj=object)))
    assert out["msg"] == "committed block 7" and out["level"] == "info" and out["logger"] == "cxl.node.ab"
    assert out["height"] == 7 and out["hash"] == "01ff" and out["peers"] == ["a"]
    assert out["obj"].startswith("<class")  # not JSON: written as text, never a crash
    assert out["ts"].endswith("Z")


def test_a_field_named_like_a_standard_key_does_not_overwrite_it():
    out = json.loads(JsonLines().format(_record(ts="fake")))
    assert out["ts"] != "fake" and out["field_ts"] == "fake"


def test_exceptions_are_one_field():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys
        rec = logging.LogRecord("cxl", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    out = json.loads(JsonLines().format(rec))
    assert "ValueError: boom" in out["exc"] and "\n" not in JsonLines().format(rec)


def test_file_log_rotates_by_size_and_keeps_n_backups(tmp_path):
    path = tmp_path / "node.log"
    log = logging.getLogger("cxl.test.rotation")
    log.propagate = False
    log.setLevel(logging.INFO)
    h = file_handler(path, max_bytes=2_000, backups=2)
    log.addHandler(h)
    try:
        assert has_file_handler(log, path) and not has_file_handler(log, tmp_path / "other.log")
        for i in range(200):  # ~100 bytes a line: ~20 KB through a 2 KB file
            log.info("line %d", i, extra={"i": i})
    finally:
        log.removeHandler(h)
        h.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["node.log", "node.log.1", "node.log.2"]
    assert all((tmp_path / f).stat().st_size <= 2_000 for f in files)
    last = json.loads(path.read_text().splitlines()[-1])
    assert last["i"] == 199
