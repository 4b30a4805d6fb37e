"""From scores to replies (softmax, top-k, class-score maps), and the metrics the queue and the
servicers update."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from service.batching import BatchQueue, BatchSettings
from service.errors import QueueFull
from service.metrics import UNKNOWN_MODEL, Metrics
from service.scores import image_scores, score, softmax, top_k


def test_softmax_equals_the_definition_and_survives_large_scores():
    scores = np.random.default_rng(0).standard_normal((4, 10))
    np.testing.assert_allclose(softmax(scores), np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True))
    big = np.array([[1000.0, 1000.0, -1000.0]])
    np.testing.assert_allclose(softmax(big), [[0.5, 0.5, 0.0]])


def test_top_k_orders_by_probability_breaking_ties_by_index_and_caps_k():
    p = np.array([[0.1, 0.4, 0.1, 0.4], [0.7, 0.1, 0.1, 0.1]])
    np.testing.assert_array_equal(top_k(p, 3), [[1, 3, 0], [0, 1, 2]])
    assert top_k(p, 10).shape == (2, 4)


def test_class_score_maps_are_averaged_over_positions():
    maps = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    np.testing.assert_allclose(image_scores(maps), maps.mean(axis=(2, 3)))
    flat = np.ones((2, 3), dtype=np.float32)
    assert image_scores(flat) is flat


def value(metrics: Metrics, name: str, **labels) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_queue_metrics_count_images_batches_waits_and_depth():
    metrics = Metrics()

    async def main():
        queue = BatchQueue(lambda i, x: x[:, :2] * 1.0, BatchSettings(max_batch_size=4, max_queue_size=4),
                           name="m:1", observer=metrics.queue_observer("m", 1))
        await asyncio.gather(*(queue.submit(np.ones((k, 3), dtype=np.float32)) for k in (1, 2, 1)))
        results = await asyncio.gather(*(queue.submit(np.ones((3, 3), dtype=np.float32)) for _ in range(3)),
                                       return_exceptions=True)
        await queue.close()
        return results

    results = asyncio.run(main())
    refused = sum(isinstance(r, QueueFull) for r in results)
    assert refused >= 1
    assert value(metrics, "convnet_images_total", model="m", version="1") == 4 + 3 * (3 - refused)
    batches = value(metrics, "convnet_batches_total", model="m", version="1")
    assert 1 <= batches <= 4
    assert value(metrics, "convnet_batch_size_count", model="m") == batches
    assert value(metrics, "convnet_batch_size_sum", model="m") == 4 + 3 * (3 - refused)
    assert value(metrics, "convnet_batch_compute_seconds_count", model="m", version="1") == batches
    assert value(metrics, "convnet_queue_wait_seconds_count", model="m") == 3 + 3 - refused
    assert value(metrics, "convnet_queue_depth", model="m") == 0


def test_request_tracker_counts_codes_durations_and_in_flight():
    metrics = Metrics()
    with metrics.track("classify") as tracker:
        tracker.known_model("m")
        assert value(metrics, "convnet_inflight_requests", model="m") == 1
    with metrics.track("kserve") as tracker:
        tracker.code = "NOT_FOUND"
    with pytest.raises(RuntimeError):
        with metrics.track("classify") as tracker:
            tracker.known_model("m")
            raise RuntimeError("fault")
    assert value(metrics, "convnet_requests_total", model="m", api="classify", code="OK") == 1
    assert value(metrics, "convnet_requests_total", model="m", api="classify", code="INTERNAL") == 1
    assert value(metrics, "convnet_requests_total", model=UNKNOWN_MODEL, api="kserve", code="NOT_FOUND") == 1
    assert value(metrics, "convnet_request_duration_seconds_count", model="m", api="classify") == 2
    assert value(metrics, "convnet_inflight_requests", model="m") == 0


def test_model_state_and_info():
    metrics = Metrics()
    metrics.model_state("m", 2, True, ["CPUExecutionProvider"], 64)
    assert value(metrics, "convnet_model_ready", model="m", version="2") == 1
    assert value(metrics, "convnet_model_info", model="m", version="2", providers="CPUExecutionProvider",
                 max_batch_size="64") == 1


def test_score_gives_each_image_its_scores_probabilities_and_ranking():
    raw = np.array([[1.0, 3.0, 2.0], [0.0, 0.0, 5.0]], dtype=np.float32)
    scored = score(raw)
    np.testing.assert_array_equal(scored.scores, raw)
    np.testing.assert_allclose(scored.probabilities, softmax(raw))
    np.testing.assert_array_equal(scored.ranking, [[1, 2, 0], [2, 0, 1]])
    assert score(raw[:, :, None, None]).raw.ndim == 4
