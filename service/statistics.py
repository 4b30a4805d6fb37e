"""Inference statistics per model version, with the meanings of Triton's statistics extension.

``VersionStatistics`` is a batch-queue observer: the queue tells it of every successful batch
(images, the durations of assembling the input, computing and splitting the output, and per
request its queue time and time since arrival) and of every failed request. As in Triton:
``inference_count`` counts images (batch rows) and ``execution_count`` batches, both successful;
``success``, ``queue`` and ``compute_*`` count successful requests, each request adding its own
queue time and the full durations of the batch it ran in; ``fail`` counts requests that reached
the queue and did not succeed (refused as full or out of time, timed out, batch failed, server
stopped, withdrawn); ``batch_stats`` counts
batches per size with their phase durations, so their counts add up to ``execution_count``.
The batch queue calls it under its scheduler's lock (service.scheduler), so nothing here is
locked.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from .batching import BatchObserver
from .errors import InvalidInput, ModelNotFound


@dataclass
class Duration:
    """A count and a cumulative duration in nanoseconds (Triton's StatisticDuration)."""

    count: int = 0
    ns: int = 0

    def add(self, seconds: float, count: int = 1) -> None:
        self.count += count
        self.ns += int(round(seconds * 1e9))


@dataclass
class BatchSizeStats:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass
class VersionStatistics(BatchObserver):
    """The statistics of one model version; the batch queue feeds it as an observer."""

    model: str
    version: int
    clock_ms: Callable[[], int] = field(default=lambda: time.time_ns() // 1_000_000, repr=False)
    last_inference: int = 0
    inference_count: int = 0
    execution_count: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    batches: dict[int, BatchSizeStats] = field(default_factory=dict)

    def batch_timed(self, images: int, input_s: float, infer_s: float, output_s: float,
                    requests: Iterable[tuple[float, float]]) -> None:
        """A batch of ``images`` succeeded; ``requests`` gives each request's (queue seconds,
        seconds from arrival to its rows being handed back)."""
        self.inference_count += images
        self.execution_count += 1
        self.last_inference = self.clock_ms()
        size = self.batches.get(images)
        if size is None:
            size = self.batches[images] = BatchSizeStats()
        size.compute_input.add(input_s)
        size.compute_infer.add(infer_s)
        size.compute_output.add(output_s)
        for queue_s, total_s in requests:
            self.success.add(total_s)
            self.queue.add(queue_s)
            self.compute_input.add(input_s)
            self.compute_infer.add(infer_s)
            self.compute_output.add(output_s)

    def request_failed(self, seconds: float) -> None:
        """A request that entered the queue failed after this many seconds."""
        self.fail.add(seconds)

    def to_dict(self) -> dict:
        """One entry of ``model_stats`` as Triton's HTTP statistics extension writes it (JSON),
        for ``GET /v2/models/{name}[/versions/{v}]/stats``."""
        def d(x: Duration) -> dict:
            return {"count": x.count, "ns": x.ns}
        return {
            "name": self.model, "version": str(self.version), "last_inference": self.last_inference,
            "inference_count": self.inference_count, "execution_count": self.execution_count,
            "inference_stats": {"success": d(self.success), "fail": d(self.fail), "queue": d(self.queue),
                                "compute_input": d(self.compute_input), "compute_infer": d(self.compute_infer),
                                "compute_output": d(self.compute_output), "cache_hit": d(Duration()),
                                "cache_miss": d(Duration())},
            "batch_stats": [{"batch_size": size, "compute_input": d(b.compute_input),
                             "compute_infer": d(b.compute_infer), "compute_output": d(b.compute_output)}
                            for size, b in sorted(self.batches.items())],
            "memory_usage": [],
        }


class Fanout(BatchObserver):
    """Hands every queue event to several observers (metrics and statistics)."""

    def __init__(self, *observers: BatchObserver):
        self.observers = observers
        for name in ("queue_depth", "queue_wait", "batch_done", "batch_timed", "request_failed"):
            hooks = [getattr(o, name) for o in observers if hasattr(o, name)]
            setattr(self, name, _call_all(hooks))


def _call_all(hooks):
    if len(hooks) == 1:
        return hooks[0]

    def call(*args, **kwargs):
        for hook in hooks:
            hook(*args, **kwargs)
    return call


class StatisticsRegistry:
    """(model, version) -> VersionStatistics, kept for the server's life (across reloads)."""

    def __init__(self, clock_ms: Callable[[], int] | None = None):
        self._stats: dict[tuple[str, int], VersionStatistics] = {}
        self._clock_ms = clock_ms

    def for_version(self, model: str, version: int) -> VersionStatistics:
        found = self._stats.get((model, version))
        if found is None:
            kwargs = {"clock_ms": self._clock_ms} if self._clock_ms else {}
            found = self._stats[(model, version)] = VersionStatistics(model, version, **kwargs)
        return found

    def select(self, model: str, version: str, served: Mapping[str, Iterable[int]]) -> list[VersionStatistics]:
        """The statistics asked for: every served model when ``model`` is empty, every version of
        it when ``version`` is empty. ``served`` maps each model to its version numbers."""
        if not model:
            if version:
                raise InvalidInput(f"version: expected empty when no model name is given, received {version!r}")
            return [self.for_version(m, v) for m in sorted(served) for v in sorted(served[m])]
        if model not in served:
            raise ModelNotFound(f"name: no model named {model!r}")
        versions = sorted(served[model])
        if version:
            if not version.isdigit() or int(version) not in versions:
                raise ModelNotFound(f"version: model {model!r} has no version {version!r}; "
                                    f"versions: {', '.join(map(str, versions)) or 'none'}")
            return [self.for_version(model, int(version))]
        return [self.for_version(model, v) for v in versions]
