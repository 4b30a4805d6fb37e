"""A shortened soak (bench/soak.py; the 30 s figures are in docs/RELIABILITY.md): open-loop load
at 2x the measured capacity for 10 s, then half the capacity, then a closed loop again. The
server sheds the excess quickly with RESOURCE_EXHAUSTED, answers every request exactly once,
keeps accepted requests' p99 within what its bounded queue implies, holds its memory, and
recovers its throughput."""
from __future__ import annotations

import asyncio

import pytest

from bench.soak import soak, table

pytestmark = pytest.mark.slow  # about 20 s of load

MODEL, IMAGES, QUEUE = "cifar-vgg", 8, 256


def test_overload_is_shed_every_request_answered_once_memory_bounded_and_throughput_recovers(start_server):
    server = start_server(config={"model": {MODEL: {"max_queue_size": QUEUE}}})
    figures = asyncio.run(soak(server.target, server.pid, server.metrics_port, MODEL, IMAGES, concurrency=16,
                               measure_s=3.0, factor=2.0, overload_s=10.0, normal_factor=0.5, normal_s=3.0))
    capacity, overload, normal, recovery = figures["phases"]
    summary = table(figures) + f"\nRSS {figures['rss_before_mib']:.0f} -> peak {figures['rss_peak_mib']:.0f} MiB"
    for phase in figures["phases"]:
        assert phase.lost == 0 and phase.misrouted == 0, summary
    assert set(overload.codes) <= {"OK", "RESOURCE_EXHAUSTED"}, summary
    assert overload.codes["RESOURCE_EXHAUSTED"] >= 0.15 * overload.sent, summary  # the excess was shed ...
    assert overload.percentile(99, refusals=True) < 1000, summary  # ... at once, not after a queue wait
    images_per_s = capacity.ok_per_s * IMAGES
    queue_wait_ms = 1e3 * QUEUE / images_per_s  # the longest a full queue takes to empty
    assert overload.percentile(99) < 3 * queue_wait_ms + 500, summary
    assert figures["rss_peak_mib"] - figures["rss_before_mib"] < 100, summary
    assert normal.codes["OK"] == normal.sent and normal.percentile(99) < 1000, summary
    assert recovery.ok_per_s >= 0.7 * capacity.ok_per_s, summary
    assert server.metric("convnet_queue_depth", model=MODEL) == 0
    assert server.metric("convnet_inflight_requests", model=MODEL) == 0
