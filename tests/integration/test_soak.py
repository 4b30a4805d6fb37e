"""A shortened soak (bench/soak.py; the 30 s figures are in docs/RELIABILITY.md): open-loop load
at 3x the measured capacity for 10 s, then a bounded load at half what the server got through, then
a closed loop again. The server sheds the excess with RESOURCE_EXHAUSTED, answers every request
exactly once (and counts it as the client saw it), keeps its queue within its bound and its memory
held, and serves again afterwards.

Only what holds at any machine speed is asserted: the load of each phase is sized from throughput
measured in the same run, and timing is compared between requests of the same phase, never with a
fixed number of milliseconds (bench/soak.py reports those figures)."""
from __future__ import annotations

import asyncio

import pytest

from bench import scrape
from bench.launcher import wait_until
from bench.soak import soak, table

pytestmark = pytest.mark.slow  # about 20 s of load

MODEL, IMAGES, QUEUE, CONCURRENCY = "cifar-vgg", 8, 256, 16
OUTSTANDING = QUEUE // IMAGES // 2  # requests; their images fit in the queue twice over
RECOVERY_RATIO, RECOVERY_TRIES = 0.5, 5


def server_counts(server) -> dict[str, float]:
    text = scrape.scrape(server.metrics_port)
    return {code: scrape.metric(text, "convnet_requests_total", model=MODEL, code=code)
            for code in ("OK", "RESOURCE_EXHAUSTED")}


def test_overload_is_shed_every_request_answered_once_memory_bounded_and_throughput_recovers(start_server):
    assert CONCURRENCY * IMAGES <= QUEUE and OUTSTANDING * IMAGES <= QUEUE  # closed loops cannot be refused
    server = start_server(config={"model": {MODEL: {"max_queue_size": QUEUE}}})
    figures = asyncio.run(soak(server.target, server.pid, server.metrics_port, MODEL, IMAGES, CONCURRENCY,
                               measure_s=3.0, factor=3.0, overload_s=10.0, normal_factor=0.5, normal_s=3.0,
                               timeout_s=120.0, normal_outstanding=OUTSTANDING,
                               recovery_ratio=RECOVERY_RATIO, recovery_tries=RECOVERY_TRIES))
    capacity, overload, normal, *recoveries = figures["phases"]
    summary = (table(figures) + f"\nRSS {figures['rss_before_mib']:.0f} -> peak {figures['rss_peak_mib']:.0f} MiB"
               f", queue peak {figures['queue_peak_images']:.0f} images"
               f", {figures['overload_peak_outstanding']} requests unanswered at most in the overload")
    print(summary)
    for phase in figures["phases"]:
        assert phase.lost == 0 and phase.misrouted == 0, summary
    assert set(overload.codes) <= {"OK", "RESOURCE_EXHAUSTED"}, summary
    assert overload.codes["RESOURCE_EXHAUSTED"] > 0 and overload.codes["OK"] > 0, summary  # shed, still serving
    assert overload.percentile(50, refusals=True) < overload.percentile(50), summary  # refused without a queue wait
    assert figures["queue_peak_images"] <= QUEUE, summary
    in_flight_mib = 2 * figures["overload_peak_outstanding"] * figures["request_mib"]  # received bytes, then a tensor
    assert figures["rss_peak_mib"] - figures["rss_before_mib"] < 100 + in_flight_mib, summary  # not with time
    for phase in (capacity, normal, *recoveries):
        assert phase.codes == {"OK": phase.sent} and phase.sent > 0, summary
    assert recoveries[-1].ok_per_s >= RECOVERY_RATIO * capacity.ok_per_s, summary

    phases = [figures["warm_up"], *figures["phases"]]
    client = {code: sum(p.codes[code] for p in phases) for code in ("OK", "RESOURCE_EXHAUSTED")}
    wait_until(lambda: server_counts(server) == client, f"the server's request counts to reach {client}", 30, server.process)
    assert server.metric("convnet_queue_depth", model=MODEL) == 0
    assert server.metric("convnet_inflight_requests", model=MODEL) == 0
