"""Rate limit for repeated log lines.

A fault that repeats in a tight loop must not turn into a disk-filling log: when a
validator ran out of file descriptors, asyncio's accept loop logged `Too many open
files` ~1.36 million times (575 MB in a minute). `RepeatFilter` lets through at most
`burst` records with the same logger, level and message template per `interval_s`, and
counts the rest; the next record of that kind it lets through carries the count in
``record.suppressed`` (the node's JSON log prints it as "suppressed"); other records
have no such attribute.

Put one filter on each handler (handler filters see records of child loggers too) and
one on the "asyncio" logger, whose records come from the event loop itself.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

DEFAULT_BURST = 5
DEFAULT_INTERVAL_S = 10.0
MAX_KINDS = 1024  # distinct (logger, level, template) remembered; the oldest go first


class RepeatFilter(logging.Filter):
    def __init__(self, burst: int = DEFAULT_BURST, interval_s: float = DEFAULT_INTERVAL_S,
                 *, clock: Callable[[], float] = time.monotonic, max_kinds: int = MAX_KINDS):
        super().__init__()
        if burst < 1 or interval_s <= 0 or max_kinds < 1:
            raise ValueError("burst and max_kinds must be >= 1 and interval_s > 0")
        self.burst = burst
        self.interval_s = interval_s
        self.clock = clock
        self.max_kinds = max_kinds
        # kind -> [window start, records let through in it, records suppressed since the last one let through]
        self._kinds: dict[tuple, list] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        kind = (record.name, record.levelno, record.msg if isinstance(record.msg, str) else type(record.msg).__name__)
        now = self.clock()
        state = self._kinds.get(kind)
        if state is None:
            if len(self._kinds) >= self.max_kinds:
                del self._kinds[next(iter(self._kinds))]  # dicts keep insertion order: the oldest kind
            state = self._kinds[kind] = [now, 0, 0]
        elif now - state[0] >= self.interval_s:
            state[0], state[1] = now, 0
        if state[1] >= self.burst:
            state[2] += 1
            return False
        state[1] += 1
        # Several handlers format one record object, each after its own filter: set the
        # count when there is one, and clear one another handler's filter left behind.
        if state[2]:
            record.suppressed = state[2]
        elif "suppressed" in record.__dict__:
            del record.__dict__["suppressed"]
        state[2] = 0
        return True


def limit_repeats(*targets: logging.Handler | logging.Logger) -> None:
    """Give each handler or logger its own RepeatFilter (once: calling again adds none)."""
    for target in targets:
        if not any(isinstance(f, RepeatFilter) for f in target.filters):
            target.addFilter(RepeatFilter())
