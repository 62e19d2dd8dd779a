"""The node's logs: JSON lines with fields, a size-rotated HOME/node.log, and a level that
can change while the node runs.

A record is one JSON object: ``ts``, ``level``, ``logger``, ``msg`` and then every field
the call gave with ``extra={...}`` (``log.info("committed block", extra={"height": 7})``
gives ``..., "msg": "committed block", "height": 7``), and ``exc`` for an exception. The
message stays readable on its own; the fields are what a log pipeline filters on.
Values that JSON cannot hold (bytes, objects) are written as text (bytes as hex).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import time
from pathlib import Path

from node.logutil import limit_repeats

# attributes every LogRecord has: anything else on a record came from `extra=`
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_OWN = ("ts", "level", "logger", "msg", "exc")


def _plain(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


class JsonLines(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the record's `extra` fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key if key not in _OWN else f"field_{key}"] = _plain(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def level_number(name: str) -> int:
    """'debug' | 'info' | 'warning' | 'error' -> the logging level."""
    return logging.getLevelName(name.upper())


def file_handler(path: str | Path, max_bytes: int, backups: int) -> logging.Handler:
    """HOME/node.log as JSON lines, rotated at `max_bytes` keeping `backups` old files
    (node.log.1 is the newest); backups 0 truncates in place."""
    h = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    h.setFormatter(JsonLines())
    h._cxl_file = str(Path(path).resolve())  # type: ignore[attr-defined]
    return h


def has_file_handler(logger: logging.Logger, path: str | Path) -> bool:
    want = str(Path(path).resolve())
    return any(getattr(h, "_cxl_file", None) == want for h in logger.handlers)


def setup_stderr_logging(level: str = "info") -> None:
    """JSON lines on stderr for every "cxl.*" logger (once per process)."""
    root = logging.getLogger("cxl")
    if not any(getattr(h, "_cxl_stderr", False) for h in root.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(JsonLines())
        h._cxl_stderr = True  # type: ignore[attr-defined]
        root.addHandler(h)
        limit_repeats(h, logging.getLogger("asyncio"))  # e.g. the accept loop's "Too many open files"
    root.setLevel(level_number(level))


__all__ = ["JsonLines", "file_handler", "has_file_handler", "setup_stderr_logging", "level_number"]
