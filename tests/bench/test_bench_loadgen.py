"""The load generator against a scripted in-process gRPC server that counts what it answers.

The server answers the bytes it gets, failing every third call with RESOURCE_EXHAUSTED and every
seventh with a delay past the client's timeout; its own tally is the independent count the
generator's figures are checked against. Bounded by request count and a short duration.
"""
from __future__ import annotations

import asyncio
from collections import Counter

import grpc
import pytest

from bench.loadgen import LoadGenerator, LoadSettings, Workload

METHOD = "/test.Scripted/Call"
TIMEOUT_S = 0.5  # long enough that a loaded machine still delivers every call before its deadline


class Scripted:
    """Answers call i: RESOURCE_EXHAUSTED when i % 3 == 1, a reply too late when i % 7 == 5, else the echo."""

    def __init__(self):
        self.calls = 0
        self.answered = Counter()
        self.payloads: set[bytes] = set()

    async def call(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        i = self.calls
        self.calls += 1
        self.payloads.add(request)
        if i % 3 == 1:
            self.answered["RESOURCE_EXHAUSTED"] += 1
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "scripted")
        if i % 7 == 5:
            self.answered["LATE"] += 1
            await asyncio.sleep(TIMEOUT_S * 3)
        else:
            self.answered["OK"] += 1
        return request[::-1]


async def run_against_scripted(settings: LoadSettings, workload_bytes: bytes = b"payload") -> tuple[Scripted, dict]:
    scripted = Scripted()
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "test.Scripted", {"Call": grpc.unary_unary_rpc_method_handler(scripted.call)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        result = await LoadGenerator(f"127.0.0.1:{port}", Workload(METHOD, workload_bytes, 3), settings).run()
    finally:
        await server.stop(None)
    return scripted, result.to_dict()


def expected_codes(calls: int) -> Counter:
    """What the script answers for calls 0..calls-1, computed from its rule."""
    codes = Counter()
    for i in range(calls):
        codes["RESOURCE_EXHAUSTED" if i % 3 == 1 else "DEADLINE_EXCEEDED" if i % 7 == 5 else "OK"] += 1
    return codes


@pytest.mark.parametrize("concurrency, channels", [(1, 1), (6, 2)])
def test_closed_loop_counts_match_the_server(concurrency, channels):
    settings = LoadSettings(concurrency=concurrency, duration_s=30, max_requests=60, channels=channels,
                            timeout_s=TIMEOUT_S)
    scripted, d = asyncio.run(run_against_scripted(settings))
    assert d["sent"] == 60 == scripted.calls  # the count bound stops the run long before the duration
    assert d["sent"] == d["ok"] + d["error_count"]
    assert Counter({"OK": d["ok"], **d["errors"]}) == expected_codes(60)
    assert scripted.payloads == {b"payload"}
    assert d["images_per_s"] == pytest.approx(3 * d["requests_per_s"])
    assert d["latency_ms"]["p50"] <= d["latency_ms"]["p90"] <= d["latency_ms"]["p99"] <= d["latency_ms"]["max"]
    assert d["channels"] == channels and d["mode"] == "closed"


def test_open_loop_sends_on_schedule_and_counts_match():
    settings = LoadSettings(concurrency=None, rate=200, duration_s=5, max_requests=40, timeout_s=TIMEOUT_S)
    scripted, d = asyncio.run(run_against_scripted(settings))
    assert d["sent"] == 40 == scripted.calls
    assert d["sent"] == d["ok"] + d["error_count"]
    assert Counter({"OK": d["ok"], **d["errors"]}) == expected_codes(40)
    assert d["skipped"] == 0 and d["mode"] == "open"
    assert set(d["send_late_ms"]) == {"p50", "p99", "max"}


def test_open_loop_skips_beyond_max_inflight():
    """Every seventh call hangs past the timeout, so with one call allowed in flight some sends are skipped."""
    settings = LoadSettings(concurrency=None, rate=400, duration_s=0.5, max_requests=200, timeout_s=TIMEOUT_S,
                            max_inflight=1)
    scripted, d = asyncio.run(run_against_scripted(settings))
    assert d["skipped"] > 0
    assert d["sent"] == scripted.calls == d["ok"] + d["error_count"]
    assert d["sent"] + d["skipped"] <= 200


def test_duration_bound_stops_a_closed_loop():
    settings = LoadSettings(concurrency=2, duration_s=0.3, max_requests=None, timeout_s=TIMEOUT_S)
    scripted, d = asyncio.run(run_against_scripted(settings))
    assert 0 < d["sent"] == scripted.calls == d["ok"] + d["error_count"]


def test_unreachable_target_fails_within_the_timeout():
    async def run():
        settings = LoadSettings(concurrency=1, duration_s=0.2, timeout_s=0.3)
        return await LoadGenerator("127.0.0.1:1", Workload(METHOD, b"x", 1), settings).run()

    with pytest.raises(TimeoutError):
        asyncio.run(run())
