"""bench/workers.py's CPU clock and bench/report.py's spread of rounds (which workers and variants print): no server."""
from __future__ import annotations

import os

from bench.report import spread
from bench.workers import cpu_seconds


def test_cpu_seconds_grow_with_work_done():
    before = cpu_seconds([os.getpid()])
    total = 0
    while cpu_seconds([os.getpid()]) - before < 0.05:
        total += sum(range(10_000))
    assert total > 0


def test_spread_is_the_median_with_the_range():
    assert spread([3.0, 1.0, 2.0], ".1f") == "2.0 (1.0-3.0)"
