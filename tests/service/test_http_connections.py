"""The bookkeeping of one HTTP port's connections (service.http.connections), on a fake clock: who is
closed at the cap, and when a slow or idle connection is closed."""
from __future__ import annotations

import asyncio

from service.connections import ConnectionCaps, RateLimitedLog
from service.http.connections import Connections


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeHandler:
    """What Connections reads and calls on a connection."""

    def __init__(self, name: str):
        self.name, self.since, self.head_started, self.closed, self.writing = name, 0.0, None, False, False

    def force_close(self) -> None:
        self.closed = True

    def __repr__(self) -> str:
        return self.name


def port(cap: int, clock: Clock) -> Connections:
    return Connections("test port", cap, header_timeout_s=10, keepalive_timeout_s=15, clock=clock)


def test_at_the_cap_a_new_connection_closes_one_that_never_sent_a_request_then_the_longest_idle():
    async def run():
        clock = Clock()
        conns = port(3, clock)
        caller, flood1, flood2 = FakeHandler("caller"), FakeHandler("flood1"), FakeHandler("flood2")
        for h in (caller, flood1, flood2):
            assert conns.admit(h)
            clock.now += 1
        conns.request_started(caller)
        conns.request_ended(caller)  # the caller is proven and idle, older activity than nothing
        newcomer = FakeHandler("new")
        assert conns.admit(newcomer) and flood1.closed and not caller.closed
        conns.request_started(newcomer)
        assert conns.admit(FakeHandler("new2")) and flood2.closed and not caller.closed
        conns.request_started(conns.unproven and next(iter(conns.unproven)))
        assert conns.admit(FakeHandler("new3")) and caller.closed  # only proven idle ones left: the longest idle
        conns.request_started(next(iter(conns.unproven)))
        assert not conns.admit(FakeHandler("refused"))  # every connection is in a request
        assert conns.refused == 1 and conns.open == 3
        conns.close()

    asyncio.run(run())


def test_request_heads_must_arrive_within_the_header_timeout_and_idle_ones_go_after_keepalive():
    async def run():
        clock = Clock()
        conns = port(10, clock)
        silent, slow, served = FakeHandler("silent"), FakeHandler("slow"), FakeHandler("served")
        for h in (silent, slow, served):
            conns.admit(h)
        slow.head_started = clock.now
        conns.request_started(served)
        clock.now += 9
        assert conns.sweep() == 0
        conns.request_ended(served)
        clock.now += 1.5
        assert conns.sweep() == 2 and silent.closed and slow.closed and not served.closed
        clock.now += 14
        served.head_started = clock.now  # a second request starts arriving after 14.0 s idle
        clock.now += 9.9
        assert conns.sweep() == 0
        clock.now += 0.2
        assert conns.sweep() == 1 and served.closed and conns.open == 0
        assert conns.closed_log.total == 3  # three slow heads, logged once with their count
        conns.close()

    asyncio.run(run())


def test_an_idle_keep_alive_connection_is_closed_after_the_keepalive_timeout_not_while_writing():
    async def run():
        clock = Clock()
        conns = port(10, clock)
        h = FakeHandler("h")
        conns.admit(h)
        conns.request_started(h)
        conns.request_ended(h)
        h.writing = True
        clock.now += 16
        assert conns.sweep() == 0
        h.writing = False
        assert conns.sweep() == 1 and h.closed
        conns.close()

    asyncio.run(run())


def test_caps_are_shares_of_the_open_files_limit_less_the_reserve_unless_set():
    caps = ConnectionCaps.derive(1024)
    assert (caps.http, caps.grpc, caps.metrics) == (int(896 * 0.4), int(896 * 0.4), int(896 * 0.1))
    assert caps.http + caps.grpc + caps.metrics + 128 <= 1024
    assert ConnectionCaps.derive(1024, http=50).http == 50
    assert ConnectionCaps.derive(100).metrics == 8


def test_a_recurring_event_is_logged_once_per_interval_with_its_count(caplog):
    clock = Clock()
    log = RateLimitedLog("accept errors", interval_s=10, clock=clock)
    logged = [log.event("EMFILE") for _ in range(1000)]
    clock.now += 10
    logged.append(log.event("EMFILE"))
    assert logged.count(True) == 2 and log.total == 1001
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["accept errors: 1 in the last 10 s",
                                                                       "accept errors: 1000 in the last 10 s"]


def test_accept_errors_on_a_loop_are_counted_and_logged_once_per_interval(caplog):
    from service.connections import ACCEPT_ERROR, quiet_accept_errors

    loop = asyncio.new_event_loop()
    try:
        log = quiet_accept_errors(loop)
        assert quiet_accept_errors(loop) is log  # installed once
        for _ in range(500):
            loop.call_exception_handler({"message": ACCEPT_ERROR, "exception": OSError(24, "Too many open files")})
        loop.call_exception_handler({"message": "something else", "exception": ValueError("kept")})
    finally:
        loop.close()
    assert log.total == 500
    accept_lines = [r for r in caplog.records if "accept errors" in r.getMessage()]
    assert len(accept_lines) == 1 and "Too many open files" in accept_lines[0].getMessage()
    assert any("something else" in r.getMessage() for r in caplog.records)  # other errors still reach the log
