"""Times and durations on the command line: one parser, one printer, used by every option.

The ledger counts time in integer milliseconds since the Unix epoch (UTC). People do not,
so every option that takes a time or a duration goes through the two click types here:

* a **time** (`TIME`): an ISO-8601 instant with its zone, ``2026-12-01T10:00Z`` or
  ``2026-12-01T11:00+01:00`` (a bare date, ``2026-12-01``, is midnight UTC); ``now``; a
  duration from now, ``2h`` / ``+2h`` (``-10m`` is ten minutes ago); or, for scripts, plain
  epoch milliseconds (``1796119200000``). A date-time without a zone is refused rather
  than guessed, since the reader's zone and the chain's UTC differ by hours.
* a **duration** (`DURATION`): a number with a unit, ``90m``, ``2h``, ``3d``, ``1w``,
  ``1d12h``, ``500ms``, ``30s``, or ISO-8601 ``PT2H`` / ``P3D``. Options that took a bare
  number before keep accepting it in their old unit (``bare_unit``), so scripts go on working.

Tables print times as ISO-8601 UTC (`format_time`); ``--json`` output keeps the ledger's
integer milliseconds (``*_ms`` fields) exactly as the node returns them, and adds nothing,
so existing JSON consumers are unaffected.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import Callable

import click

UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_UNIT_WORDS = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_ISO_DURATION = re.compile(r"P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?")
# epoch ms beyond year 9999 cannot be printed as ISO-8601 and is surely a typo
MAX_TIME_MS = 253_402_300_799_999

DURATION_HELP = "e.g. 90m, 2h, 3d, 1w, 1d12h or ISO-8601 PT2H"
TIME_HELP = "ISO-8601 with zone (2026-12-01T10:00Z), now, a duration from now (2h, -10m) or epoch ms"


class TimeParseError(ValueError):
    """Text that is not a time or a duration; the message says what is accepted."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def parse_duration_ms(text: str) -> int:
    """``2h`` -> 7_200_000. Raises `TimeParseError` for anything else (a bare number included)."""
    s = text.strip().lower()
    if not s:
        raise TimeParseError("empty duration")
    if s.startswith("p"):
        m = _ISO_DURATION.fullmatch(s.upper())
        if not m or not any(m.groups()) or s.endswith("t"):
            raise TimeParseError(f"{text!r} is not an ISO-8601 duration such as PT2H or P3D")
        w, d, h, mi, sec = m.groups()
        total = (int(w or 0) * UNIT_MS["w"] + int(d or 0) * UNIT_MS["d"] + int(h or 0) * UNIT_MS["h"]
                 + int(mi or 0) * UNIT_MS["m"] + round(float(sec or 0) * 1000))
        return total
    pos, total, seen = 0, 0.0, []
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        if m.group(2) in seen:
            raise TimeParseError(f"{text!r} gives {_UNIT_WORDS[m.group(2)]} twice")
        seen.append(m.group(2))
        total += float(m.group(1)) * UNIT_MS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not seen:
        raise TimeParseError(f"{text!r} is not a duration ({DURATION_HELP})")
    if total != int(total):
        raise TimeParseError(f"{text!r} is not a whole number of milliseconds")
    return int(total)


def parse_time_ms(text: str, now: int | None = None) -> int:
    """An instant as epoch milliseconds (UTC); see the module docstring for the forms."""
    s = text.strip()
    if not s:
        raise TimeParseError("empty time")
    if s.isdigit():  # epoch milliseconds, the ledger's own unit (kept for scripts)
        value = int(s)
    elif s.lower() == "now":
        value = now_ms() if now is None else now
    elif s[0] in "+-" or s[0].isdigit() and _PART.match(s.lower()) and not _looks_like_date(s):
        sign = -1 if s[0] == "-" else 1
        value = (now_ms() if now is None else now) + sign * parse_duration_ms(s.lstrip("+-"))
    else:
        value = _parse_iso(s)
    if not 0 <= value <= MAX_TIME_MS:
        raise TimeParseError(f"{text!r} is outside the years 1970-9999")
    return value


def _looks_like_date(s: str) -> bool:
    return bool(re.match(r"\d{4}-\d{2}", s))


def _parse_iso(s: str) -> int:
    try:
        dt = datetime.fromisoformat(s.replace("z", "Z"))
    except ValueError:
        raise TimeParseError(f"{s!r} is not a time ({TIME_HELP})") from None
    if dt.tzinfo is None:
        if "T" in s.upper() or " " in s or ":" in s:
            raise TimeParseError(f"{s!r} has no time zone: add Z for UTC (e.g. {s}Z) or an offset such as +01:00")
        dt = dt.replace(tzinfo=timezone.utc)  # a bare date: midnight UTC
    delta = dt - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def format_time(ms: int | None) -> str | None:
    """Epoch ms -> ``2026-12-01T10:00:00Z`` (milliseconds shown only when not zero)."""
    if ms is None:
        return None
    if not isinstance(ms, int) or isinstance(ms, bool) or not 0 <= ms <= MAX_TIME_MS:
        return str(ms)  # not a time we can print: show it as the node sent it
    dt = datetime.fromtimestamp(ms // 1000, tz=timezone.utc)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{ms % 1000:03d}Z" if ms % 1000 else "Z")


def format_duration(ms: int) -> str:
    """7_200_000 -> ``2h``; 5_400_000 -> ``1h30m``; the inverse of `parse_duration_ms`."""
    if ms == 0:
        return "0s"
    out, left = [], ms
    for unit in ("d", "h", "m", "s", "ms"):
        n, left = divmod(left, UNIT_MS[unit])
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)


class TimeType(click.ParamType):
    """A click option value that is an instant; converts to epoch milliseconds."""

    name = "time"

    def get_metavar(self, param, ctx=None) -> str:  # click 8.2 passes ctx
        return "TIME"

    def convert(self, value, param, ctx) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            return parse_time_ms(str(value))
        except TimeParseError as exc:
            self.fail(str(exc), param, ctx)


class DurationType(click.ParamType):
    """A click option value that is a duration; converts to milliseconds.

    `bare_unit` ("s", "d" …): a bare number is read in that unit, for options that took one
    before; `warn_bare` then says on stderr how to write it instead. `seconds`: the value is
    delivered as float seconds (timeouts) instead of integer milliseconds.
    """

    name = "duration"

    def __init__(self, bare_unit: str | None = None, warn_bare: bool = False, min_ms: int = 1,
                 max_ms: int | None = None, seconds: bool = False):
        self.bare_unit, self.warn_bare, self.min_ms, self.max_ms = bare_unit, warn_bare, min_ms, max_ms
        self.seconds = seconds

    def get_metavar(self, param, ctx=None) -> str:
        return "DURATION"

    def convert(self, value, param, ctx) -> int | float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value  # already converted (click converts defaults and values once)
        text = str(value).strip()
        try:
            if re.fullmatch(r"\d+(\.\d+)?", text):
                if self.bare_unit is None:
                    raise TimeParseError(f"{text!r} has no unit: write e.g. {text}s, {text}m, {text}h or {text}d")
                if self.warn_bare:
                    name = param.opts[0] if param is not None else "the option"
                    click.echo(f"warning: a bare number for {name} is read as {_UNIT_WORDS[self.bare_unit]}; "
                               f"write {text}{self.bare_unit} (bare numbers are deprecated)", err=True)
                text += self.bare_unit
            ms = parse_duration_ms(text)
        except TimeParseError as exc:
            self.fail(str(exc), param, ctx)
        if ms < self.min_ms or (self.max_ms is not None and ms > self.max_ms):
            bound = f"between {format_duration(self.min_ms)} and {format_duration(self.max_ms)}" if self.max_ms \
                else f"at least {format_duration(self.min_ms)}"
            self.fail(f"{value!r} must be {bound}", param, ctx)
        return ms / 1000 if self.seconds else ms


TIME = TimeType()


def seconds_option(*decls: str, default: str, help: str, min_s: float = 1, max_s: float | None = None,
                   **kwargs) -> Callable:
    """A timeout or wait: a duration (``30s``, ``2m``; a bare number is seconds), as float seconds."""
    kind = DurationType(bare_unit="s", min_ms=round(min_s * 1000), seconds=True,
                        max_ms=None if max_s is None else round(max_s * 1000))
    return click.option(*decls, type=kind, default=default, show_default=True, metavar="DURATION",
                        help=f"{help} (e.g. 30s, 2m; a bare number is seconds).", **kwargs)


def time_option(*decls: str, help: str, **kwargs) -> Callable:
    """``click.option(..., type=TIME)`` with the accepted forms appended to the help."""
    return click.option(*decls, type=TIME, metavar="TIME", help=f"{help} ({TIME_HELP}).", **kwargs)
