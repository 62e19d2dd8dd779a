"""The bookkeeping behind the client API limits: connection counts per address, which
idle connection makes room first, long-poll slots, the rate-limited log, and the config
fields that set them."""

from __future__ import annotations

import logging

import pytest

from node.api_limits import ApiLimits, ConnectionGuard, LongPollBudget, RateLimitedLog, raw_error
from node.config import NodeConfig, config_from_dict
from node.errors import ConfigError


class FakeConn:
    """Stands in for a GuardedHandler: eviction counts it out, as the real one does."""

    def __init__(self, guard: ConnectionGuard, ip: str):
        self.guard, self.ip, self.evicted = guard, ip, False

    def evict(self):
        self.evicted = True
        self.guard.release(self, self.ip)


def open_conn(guard: ConnectionGuard, ip: str, idle: bool = True) -> FakeConn | str:
    conn = FakeConn(guard, ip)
    refused = guard.admit(ip)
    if refused is not None:
        return refused
    if idle:
        guard.idle[conn] = None
    return conn


def test_per_address_cap_refuses_and_evicts_nothing():
    guard = ConnectionGuard(ApiLimits(max_connections=10, max_connections_per_ip=2), logging.getLogger("t"))
    a, b = open_conn(guard, "10.0.0.1"), open_conn(guard, "10.0.0.1")
    refused = open_conn(guard, "10.0.0.1")
    assert isinstance(refused, str) and "10.0.0.1" in refused
    assert not a.evicted and not b.evicted and guard.total == 2
    assert isinstance(open_conn(guard, "10.0.0.2"), FakeConn)


def test_at_the_total_cap_the_longest_idle_connection_makes_room():
    guard = ConnectionGuard(ApiLimits(max_connections=3, max_connections_per_ip=10), logging.getLogger("t"))
    first, second, third = (open_conn(guard, f"10.0.0.{i}") for i in range(3))
    del guard.idle[first]  # `first` has a request in flight: it is never evicted
    newcomer = open_conn(guard, "10.0.0.9")
    assert isinstance(newcomer, FakeConn)
    assert (first.evicted, second.evicted, third.evicted) == (False, True, False)
    assert guard.total == 3 and guard.evicted == 1 and "10.0.0.1" not in guard.per_ip


def test_when_every_connection_is_busy_a_newcomer_is_refused():
    guard = ConnectionGuard(ApiLimits(max_connections=2, max_connections_per_ip=10), logging.getLogger("t"))
    conns = [open_conn(guard, "10.0.0.1", idle=False), open_conn(guard, "10.0.0.2", idle=False)]
    refused = open_conn(guard, "10.0.0.3")
    assert isinstance(refused, str) and "at most 2" in refused
    guard.release(conns[0], "10.0.0.1")
    assert isinstance(open_conn(guard, "10.0.0.3"), FakeConn)


def test_long_poll_budget_total_and_per_address():
    budget = LongPollBudget(total=3, per_ip=2)
    assert [budget.acquire("a"), budget.acquire("a"), budget.acquire("a")] == [True, True, False]
    assert budget.acquire("b") and not budget.acquire("c")  # the total of 3 is reached
    budget.release("a")
    assert budget.acquire("c") and budget.per_ip == {"a": 1, "b": 1, "c": 1}
    assert not LongPollBudget(total=0, per_ip=5).acquire("a")  # 0 turns long polls off


def test_rate_limited_log_bounds_a_flood(caplog):
    log = RateLimitedLog(logging.getLogger("cxl.test.ratelimit"), burst=3, window_s=3600)
    with caplog.at_level("INFO", logger="cxl.test.ratelimit"):
        for i in range(50):
            log.info("refused %d", i)
    assert [r.getMessage() for r in caplog.records] == ["refused 0", "refused 1", "refused 2"]
    assert log._dropped == 47


def test_raw_error_is_a_complete_json_answer():
    answer = raw_error(503, "Service Unavailable", "too_many_connections", "full", retry_after=1)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ") and b"Connection: close" in head and b"Retry-After: 1" in head
    assert body == b'{"error":{"code":"too_many_connections","message":"full"}}'
    assert f"Content-Length: {len(body)}".encode() in head


def test_limits_come_from_the_config():
    cfg = NodeConfig(max_connections=7, api_max_connections_per_ip=3, api_header_timeout_s=4, api_idle_timeout_s=5,
                     api_body_timeout_s=6, api_max_long_polls=2, api_max_long_polls_per_ip=1, max_body_bytes=4096)
    assert ApiLimits.from_config(cfg) == ApiLimits(4096, 7, 3, 4, 5, 6, 2, 1)


@pytest.mark.parametrize("field,bad", [("api_header_timeout_s", 0), ("api_idle_timeout_s", 1.5),
                                       ("api_body_timeout_s", True), ("api_max_connections_per_ip", 0),
                                       ("api_max_long_polls", -1), ("api_max_long_polls_per_ip", "3")])
def test_bad_limit_values_are_refused_naming_the_field(field, bad):
    with pytest.raises(ConfigError, match=field):
        config_from_dict({field: bad})
