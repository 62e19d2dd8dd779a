"""Checked request parameters for the client API's extensions (market, governance): a query
string with only known, unrepeated, well-formed values, and positive ids in paths. Every
problem is a 400 with a stable code; nothing else is accepted (ASCII digits only: `int()`
alone would take Unicode digits)."""

from __future__ import annotations

import re

from aiohttp import web

from node.errors import BadRequest

MAX_PAGE = 200
DEFAULT_PAGE = 50
TEXT = re.compile(r"[^\x00-\x1f]{1,64}")
DIGITS = re.compile(r"[0-9]{1,19}")
MAX_INT = 2**62


def positive_id(text: str) -> int | None:
    """`text` as an id (1 .. 2**63-1, ASCII digits), or None."""
    if not DIGITS.fullmatch(text) or not 1 <= int(text) < 2**63:
        return None
    return int(text)


def path_id(request: web.Request, what: str) -> int:
    """The `{id}` of the path, or 400 `bad_<what>_id`."""
    text = request.match_info["id"]
    value = positive_id(text)
    if value is None:
        raise BadRequest(f"{what} id must be a positive whole number, got {text!r}", f"bad_{what}_id")
    return value


class Query:
    """Validated access to a request's query string; every problem is a 400 `bad_query`."""

    def __init__(self, request: web.Request, allowed: set[str]):
        self.q = request.query
        unknown = sorted(set(self.q) - allowed)
        if unknown:
            known = ", ".join(sorted(allowed)) or "none"
            raise BadRequest(f"unknown query parameter(s) {', '.join(unknown)}; known: {known}", "bad_query")

    def text(self, name: str) -> str | None:
        values = self.q.getall(name, [])
        if len(values) > 1:
            raise BadRequest(f"{name}: give it once", "bad_query")
        if not values:
            return None
        if not TEXT.fullmatch(values[0]):
            raise BadRequest(f"{name}: expected 1-64 printable characters", "bad_query")
        return values[0]

    def texts(self, name: str) -> list[str]:
        """Repeatable, and comma-separated values are split: feature=a&feature=b or feature=a,b."""
        out = []
        for value in self.q.getall(name, []):
            for part in value.split(","):
                if not TEXT.fullmatch(part):
                    raise BadRequest(f"{name}: expected 1-64 printable characters per value", "bad_query")
                out.append(part)
        return out

    def int(self, name: str, default: int | None = None, lo: int = 0, hi: int = MAX_INT) -> int | None:
        text = self.text(name)
        if text is None:
            return default
        if not DIGITS.fullmatch(text) or not lo <= int(text) <= hi:
            raise BadRequest(f"{name}: expected a whole number from {lo} to {hi}, got {text!r}", "bad_query")
        return int(text)

    def choice(self, name: str, choices: tuple[str, ...], default: str | None = None) -> str | None:
        text = self.text(name)
        if text is None:
            return default
        if text not in choices:
            raise BadRequest(f"{name}: expected one of {', '.join(choices)}, got {text!r}", "bad_query")
        return text

    def flag(self, name: str) -> bool:
        return self.choice(name, ("true", "false", "1", "0"), "false") in ("true", "1")

    def page(self, default: int = DEFAULT_PAGE, most: int = MAX_PAGE) -> tuple[int | None, int]:
        return self.int("cursor", None, 0), self.int("limit", default, 1, most)
