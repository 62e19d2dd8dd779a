"""Repeated log lines are rate-limited (575 MB of `Too many open files` in a minute)."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import socket

import pytest

from node.app import JsonLines, setup_stderr_logging
from node.logutil import RepeatFilter, limit_repeats


class Capture(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def logger():
    log = logging.getLogger("cxl.test.logutil")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    yield log
    log.handlers.clear()
    log.filters.clear()


def test_a_tight_loop_of_one_message_is_cut_to_a_burst_and_the_next_line_counts_the_rest(logger):
    clock = [0.0]
    cap = Capture()
    cap.addFilter(RepeatFilter(burst=3, interval_s=10, clock=lambda: clock[0]))
    logger.addHandler(cap)
    for i in range(20_000):
        logger.error("accept failed: %s", "Too many open files")
    assert len(cap.records) == 3 and not any(hasattr(r, "suppressed") for r in cap.records)
    clock[0] = 10.0
    logger.error("accept failed: %s", "Too many open files")
    assert len(cap.records) == 4 and cap.records[-1].suppressed == 20_000 - 3
    assert json.loads(JsonLines().format(cap.records[-1]))["suppressed"] == 19_997


def test_different_messages_levels_and_loggers_are_counted_apart(logger):
    cap = Capture()
    cap.addFilter(RepeatFilter(burst=1, interval_s=10, clock=lambda: 0.0))
    logger.addHandler(cap)
    other = logger.getChild("other")
    for _ in range(50):
        logger.error("one %d", 1)
        logger.error("two %d", 2)
        logger.warning("one %d", 1)
        other.error("one %d", 1)
    assert [r.getMessage() for r in cap.records] == ["one 1", "two 2", "one 1", "one 1"]
    assert "suppressed" not in json.loads(JsonLines().format(cap.records[0]))


def test_memory_is_bounded_by_the_number_of_kinds(logger):
    f = RepeatFilter(burst=1, interval_s=10, clock=lambda: 0.0, max_kinds=8)
    cap = Capture()
    cap.addFilter(f)
    logger.addHandler(cap)
    for i in range(1000):
        logger.error("distinct template %d" % i)  # noqa: a new template each time
    assert len(f._kinds) == 8 and len(cap.records) == 1000


def test_limit_repeats_is_idempotent():
    h = Capture()
    limit_repeats(h)
    limit_repeats(h)
    assert sum(isinstance(f, RepeatFilter) for f in h.filters) == 1


async def test_the_event_loops_accept_error_flood_is_limited_on_the_asyncio_logger():
    """What asyncio does on EMFILE in its accept loop: call_exception_handler -> logger "asyncio"."""
    log = logging.getLogger("asyncio")
    cap = Capture()
    log.addHandler(cap)
    old_filters = list(log.filters)
    try:
        limit_repeats(log)
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        for _ in range(5_000):
            loop.call_exception_handler({"message": "socket.accept() out of system resource",
                                         "exception": OSError(errno.EMFILE, "Too many open files"),
                                         "socket": sock})
        sock.close()
        assert 1 <= len(cap.records) <= 5
    finally:
        log.removeHandler(cap)
        log.filters[:] = old_filters


def test_the_node_logging_setup_installs_the_limits():
    cxl, aio = logging.getLogger("cxl"), logging.getLogger("asyncio")
    saved = (list(cxl.handlers), cxl.level, list(aio.filters))
    try:
        setup_stderr_logging("info")
        stderr = [h for h in cxl.handlers if getattr(h, "_cxl_stderr", False)]
        assert stderr and any(isinstance(f, RepeatFilter) for f in stderr[0].filters)
        assert any(isinstance(f, RepeatFilter) for f in aio.filters)
    finally:
        cxl.handlers[:], aio.filters[:] = saved[0], saved[2]
        cxl.setLevel(saved[1])


def test_two_handlers_each_report_their_own_count_on_the_shared_record(logger):
    """One LogRecord goes through every handler: a count the first handler's filter set
    must not show up in the second handler's output."""
    clock = [0.0]
    seen = {"a": [], "b": []}

    class Seen(logging.Handler):
        def __init__(self, name, burst):
            super().__init__()
            self.name_ = name
            self.addFilter(RepeatFilter(burst=burst, interval_s=10, clock=lambda: clock[0]))

        def emit(self, record):
            seen[self.name_].append(getattr(record, "suppressed", None))

    logger.addHandler(Seen("a", burst=1))
    logger.addHandler(Seen("b", burst=100))
    for _ in range(4):
        logger.error("same")
    clock[0] = 10.0
    logger.error("same")
    assert seen["a"] == [None, 3]
    assert seen["b"] == [None] * 5
