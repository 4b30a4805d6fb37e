"""The statistics collector on its own: exact counts and sums, with Triton's meanings."""
from __future__ import annotations

import pytest

from service.errors import ModelNotFound
from service.statistics import Fanout, StatisticsRegistry, VersionStatistics


def test_counts_images_batches_and_requests_exactly():
    s = VersionStatistics("m", 1, clock_ms=lambda: 1234)
    s.batch_timed(8, 0.001, 0.010, 0.0005, [(0.002, 0.0135)] * 4)  # 4 requests of 2 images
    s.batch_timed(3, 0.002, 0.005, 0.0, [(0.0, 0.007)] * 3)
    s.request_failed(0.25)
    assert (s.inference_count, s.execution_count, s.last_inference) == (11, 2, 1234)
    assert (s.success.count, s.success.ns) == (7, 4 * 13_500_000 + 3 * 7_000_000)
    assert (s.queue.count, s.queue.ns) == (7, 8_000_000)
    assert (s.compute_infer.count, s.compute_infer.ns) == (7, 4 * 10_000_000 + 3 * 5_000_000)
    assert (s.compute_input.count, s.compute_input.ns) == (7, 4 * 1_000_000 + 3 * 2_000_000)
    assert (s.fail.count, s.fail.ns) == (1, 250_000_000)
    assert sorted(s.batches) == [3, 8]
    assert sum(b.compute_infer.count for b in s.batches.values()) == s.execution_count
    assert s.batches[8].compute_infer.ns == 10_000_000 and s.batches[8].compute_output.ns == 500_000


def test_no_inference_yet_has_last_inference_zero():
    s = VersionStatistics("m", 2)
    assert (s.last_inference, s.inference_count, s.execution_count) == (0, 0, 0)


def test_fanout_calls_every_observer_that_has_the_hook():
    class Depth:
        def __init__(self):
            self.depth = 0

        def queue_depth(self, delta):
            self.depth += delta

    a, b, s = Depth(), Depth(), VersionStatistics("m", 1)
    f = Fanout(a, b, s)
    f.queue_depth(3)
    f.batch_timed(2, 0, 0, 0, [(0, 0)])
    assert (a.depth, b.depth, s.inference_count) == (3, 3, 2)


def test_registry_selects_models_and_versions():
    r = StatisticsRegistry()
    known = {"a": [1, 2], "b": [3]}
    assert [(s.model, s.version) for s in r.select("a", "", known)] == [("a", 1), ("a", 2)]
    assert [(s.model, s.version) for s in r.select("b", "3", known)] == [("b", 3)]
    r.for_version("a", 1).batch_timed(1, 0, 0, 0, [(0, 0)])
    assert r.select("a", "1", known)[0].inference_count == 1  # the same collector
    assert [(s.model, s.version) for s in r.select("", "", known)] == [("a", 1), ("a", 2), ("b", 3)]
    with pytest.raises(ModelNotFound, match="no model named 'c'"):
        r.select("c", "", known)
    with pytest.raises(ModelNotFound, match="has no version '9'"):
        r.select("a", "9", known)


def test_http_form_has_triton_field_names_and_the_same_figures():
    s = VersionStatistics("m", 3, clock_ms=lambda: 99)
    s.batch_timed(4, 0.001, 0.002, 0.003, [(0.0005, 0.007)] * 2)
    d = s.to_dict()
    assert (d["name"], d["version"], d["last_inference"], d["inference_count"], d["execution_count"]) == ("m", "3", 99, 4, 1)
    assert d["inference_stats"]["success"] == {"count": 2, "ns": 14_000_000}
    assert d["inference_stats"]["queue"] == {"count": 2, "ns": 1_000_000}
    assert d["batch_stats"] == [{"batch_size": 4, "compute_input": {"count": 1, "ns": 1_000_000},
                                 "compute_infer": {"count": 1, "ns": 2_000_000},
                                 "compute_output": {"count": 1, "ns": 3_000_000}}]
