"""The load generator's statistics and settings, against independent computations on known inputs."""
from __future__ import annotations

import argparse
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.load import ArgumentError, add_arguments, check_arguments, settings_from
from bench.loadgen import LoadSettings
from bench.loadgen_stats import Recorder, percentile, summarize


def brute_force_percentile(values: list[float], p: float) -> float:
    """The smallest value v such that at least p % of the values are <= v (the definition)."""
    n = len(values)
    return min(v for v in values if sum(1 for w in values if w <= v) >= p / 100 * n)


@given(st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=60),
       st.sampled_from([1, 10, 25, 50, 90, 99, 99.9, 100]))
@settings(max_examples=200, deadline=None)
def test_percentile_is_the_nearest_rank_of_the_definition(values, p):
    assert percentile(values, p) == brute_force_percentile(values, p)


def test_percentile_on_one_to_hundred():
    shuffled = [float(i) for i in np.random.default_rng(0).permutation(np.arange(1, 101))]
    assert [percentile(shuffled, p) for p in (50, 90, 99, 100)] == [50.0, 90.0, 99.0, 100.0]
    assert percentile([7.0], 50) == 7.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match="percentile"):
        percentile(shuffled, 0)


def test_summary_of_a_known_run():
    rng = np.random.default_rng(3)
    latencies = rng.exponential(0.002, size=997).tolist()
    codes = {"OK": 997, "RESOURCE_EXHAUSTED": 2, "DEADLINE_EXCEEDED": 1, "UNAVAILABLE": 0}
    s = summarize(latencies, codes, elapsed_s=2.5, images_per_request=8, sent=1000)
    assert s.sent == 1000 == s.ok + s.error_count
    assert s.ok == 997
    assert s.errors == {"DEADLINE_EXCEEDED": 1, "RESOURCE_EXHAUSTED": 2}
    assert s.requests_per_s == pytest.approx(997 / 2.5)
    assert s.images_per_s == pytest.approx(997 * 8 / 2.5)
    for p in (50, 90, 99):
        assert s.latency_ms[f"p{p}"] == pytest.approx(np.percentile(latencies, p, method="inverted_cdf") * 1e3)
    assert s.latency_ms["max"] == pytest.approx(max(latencies) * 1e3)
    assert s.latency_ms["mean"] == pytest.approx(np.mean(latencies) * 1e3)
    assert s.to_dict()["error_count"] == 3


def test_summary_without_successes_and_bad_input():
    s = summarize([], {"UNAVAILABLE": 4}, elapsed_s=1.0, images_per_request=1)
    assert (s.sent, s.ok, s.errors, s.requests_per_s) == (4, 0, {"UNAVAILABLE": 4}, 0.0)
    assert math.isnan(s.latency_ms["p50"]) and math.isnan(s.latency_ms["max"])
    with pytest.raises(ValueError, match="one per OK request"):
        summarize([0.1], {"OK": 2}, elapsed_s=1.0, images_per_request=1)
    with pytest.raises(ValueError, match="elapsed_s"):
        summarize([], {}, elapsed_s=0.0, images_per_request=1)


def test_recorder_keeps_latencies_of_ok_requests_only():
    rec = Recorder()
    events = [("OK", 0.001), ("INTERNAL", 0.5), ("OK", 0.003), ("INTERNAL", 0.2), ("NOT_FOUND", 0.1)]
    for code, latency in events:
        rec.record(code, latency)
    assert rec.latencies == [0.001, 0.003]
    assert rec.codes == Counter(code for code, _ in events)
    assert rec.finished == len(events)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize("argv, flag", [
    (["--duration", "0"], "--duration"), (["--duration", "7200"], "--duration"),
    (["--requests", "0"], "--requests"), (["--requests", "20000000"], "--requests"),
    (["--concurrency", "0"], "--concurrency"), (["--rate", "-1"], "--rate"), (["--batch", "0"], "--batch"),
    (["--api", "kserve"], "--model"),
])
def test_flags_outside_the_bounds_are_refused_by_name(argv, flag):
    with pytest.raises(ArgumentError, match=flag) as info:
        check_arguments(parse(*argv))
    assert "expected" in str(info.value)


def test_settings_from_flags():
    closed = settings_from(parse("--concurrency", "64", "--duration", "3", "--requests", "500"))
    assert (closed.mode, closed.concurrency, closed.rate, closed.duration_s, closed.max_requests) == \
        ("closed", 64, None, 3.0, 500)
    assert closed.channels == 4  # one per 16 calls in flight
    assert settings_from(parse()).concurrency == 1 and settings_from(parse()).channels == 1
    assert settings_from(parse("-c", "1000")).channels == 8  # capped
    assert settings_from(parse("-c", "8", "--channels", "3")).channels == 3
    opened = settings_from(parse("--rate", "250"))
    assert (opened.mode, opened.rate, opened.concurrency) == ("open", 250.0, None)


def test_load_settings_name_the_wrong_field():
    with pytest.raises(ValueError, match="either concurrency"):
        LoadSettings(concurrency=None, rate=None)
    with pytest.raises(ValueError, match="either concurrency"):
        LoadSettings(concurrency=4, rate=10.0)
    with pytest.raises(ValueError, match="channels: expected an integer >= 1, got 0"):
        LoadSettings(channels=0)
