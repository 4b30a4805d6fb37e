"""The Prometheus metrics of docs/DESIGN.md, on their own registry, served over HTTP on the
metrics port (``/metrics``), never on the gRPC port.

The batch queues report through ``QueueMetrics`` (a ``BatchObserver``); the servicers time each
request with ``Metrics.track``. Requests naming a model the server does not have are counted
under the model label ``UNKNOWN_MODEL``, so callers cannot grow the label set without bound.
The two gauges that every request moves up and down (in flight, queue depth) are ``LiveCount``s:
integers that Prometheus reads when it scrapes, instead of four locked updates per request: in
flight changes under a lock of its own (``SharedCount``: gRPC handler threads and the event loop
move it), queue depth under the batch scheduler's lock. Queue depth and queue wait carry a
``priority`` label for the models whose priority levels are on (one series per level), and only
the ``model`` label otherwise.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import bisect

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

from .batching import BatchObserver
from .statistics import Fanout, StatisticsRegistry

SECONDS_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_SIZE_BUCKETS = tuple(2 ** i for i in range(10))  # 1, 2, 4, ..., 512
UNKNOWN_MODEL = "_unknown"


class Metrics:
    """Every metric of the service, registered on one registry of its own."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("convnet_requests_total", "Requests answered, by API and gRPC status code.",
                                ["model", "api", "code"], registry=r)
        self.images = Counter("convnet_images_total", "Images inferred.", ["model", "version"], registry=r)
        self.batches = Counter("convnet_batches_total", "Batches executed.", ["model", "version"], registry=r)
        self.request_duration = Histogram("convnet_request_duration_seconds", "End-to-end request latency in the server.",
                                          ["model", "api"], buckets=SECONDS_BUCKETS, registry=r)
        self.queue_wait = QueueHistogram("convnet_queue_wait_seconds", "Time a request waited in the batch queue.",
                                         SECONDS_BUCKETS)
        r.register(self.queue_wait)
        self.batch_compute = Histogram("convnet_batch_compute_seconds", "Compute time of one batch.",
                                       ["model", "version"], buckets=SECONDS_BUCKETS, registry=r)
        self.batch_size = Histogram("convnet_batch_size", "Images per executed batch.", ["model"],
                                    buckets=BATCH_SIZE_BUCKETS, registry=r)
        self.queue_depth = QueueGauge("convnet_queue_depth", "Images waiting in the batch queue.")
        r.register(self.queue_depth)
        self.inflight = Gauge("convnet_inflight_requests", "Requests being handled.", ["model"], registry=r)
        self.model_ready = Gauge("convnet_model_ready", "1 when the model version serves, else 0.",
                                 ["model", "version"], registry=r)
        self.model_info = Info("convnet_model", "A loaded model version.", ["model", "version"], registry=r)
        self.statistics = StatisticsRegistry()
        self._children: dict[tuple, object] = {}
        self._live: dict[tuple, SharedCount] = {}
        self._making = threading.Lock()

    def child(self, metric, *labels: str):
        """``metric.labels(*labels)``, cached: the request path skips the label lookup and its lock."""
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def live(self, gauge: Gauge, model: str) -> "SharedCount":
        """The count that ``gauge{model=...}`` reports, made (and hooked to the gauge) on first use."""
        key = (id(gauge), model)
        found = self._live.get(key)
        if found is None:
            with self._making:
                found = self._live.get(key)
                if found is None:
                    found = self._live[key] = SharedCount()
                    gauge.labels(model).set_function(found.get)
        return found

    def queue_observer(self, model: str, version: int, priority_levels: int = 0) -> BatchObserver:
        """The observer of a version's batch queue: its metrics and its statistics (service.statistics)."""
        return Fanout(QueueMetrics(self, model, str(version), priority_levels > 0),
                      self.statistics.for_version(model, version))

    def model_state(self, model: str, version: int, ready: bool, providers: list[str], max_batch_size: int) -> None:
        self.model_ready.labels(model, str(version)).set(1 if ready else 0)
        self.model_info.labels(model, str(version)).info(
            {"providers": ",".join(providers), "max_batch_size": str(max_batch_size)})

    def track(self, api: str, model: str = UNKNOWN_MODEL) -> "RequestTracker":
        return RequestTracker(self, api, model)


class LiveCount:
    """An integer changed by one thread at a time (the event loop, or a version's batch scheduler under
    its lock) and read by the scrape thread."""

    __slots__ = ("value",)

    def __init__(self):
        self.value = 0

    def get(self) -> float:
        return self.value


class SharedCount(LiveCount):
    """A LiveCount that any thread moves (the requests in flight: gRPC handler threads and the
    event loop at once), under a lock of its own."""

    __slots__ = ("_lock",)

    def __init__(self):
        super().__init__()
        self._lock = threading.Lock()

    def add(self, delta: int) -> None:
        with self._lock:
            self.value += delta


def _labels(model: str, level: int | None) -> tuple[tuple[str, str], ...]:
    return (("model", model),) if level is None else (("model", model), ("priority", str(level)))


class QueueGauge:
    """A gauge family of LiveCounts whose label set is ``model`` or ``model, priority`` per model."""

    def __init__(self, name: str, documentation: str):
        self.name, self.documentation = name, documentation
        self._counts: dict[tuple, LiveCount] = {}

    def live(self, model: str, level: int | None = None) -> LiveCount:
        return self._counts.setdefault(_labels(model, level), LiveCount())

    def collect(self):
        family = Metric(self.name, self.documentation, "gauge")
        for labels, count in list(self._counts.items()):
            family.add_sample(self.name, dict(labels), count.value)
        yield family


class QueueHistogram:
    """A histogram family observed on the event loop, with the label sets of QueueGauge."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]):
        self.name, self.documentation, self.buckets = name, documentation, tuple(buckets)
        self._series: dict[tuple, list] = {}

    def observer(self, model: str, level: int | None = None):
        """``observe(seconds)`` for one series."""
        series = self._series.setdefault(_labels(model, level), [[0] * (len(self.buckets) + 1), 0.0])
        counts, buckets = series[0], self.buckets

        def observe(value: float) -> None:
            counts[bisect.bisect_left(buckets, value)] += 1
            series[1] += value
        return observe

    def collect(self):
        family = Metric(self.name, self.documentation, "histogram")
        for labels, (counts, total) in list(self._series.items()):
            cumulative = 0
            for bound, count in zip((*self.buckets, float("inf")), list(counts)):
                cumulative += count
                family.add_sample(self.name + "_bucket", {**dict(labels), "le": floatToGoString(bound)}, cumulative)
            family.add_sample(self.name + "_count", dict(labels), cumulative)
            family.add_sample(self.name + "_sum", dict(labels), total)
        yield family


@dataclass
class QueueMetrics(BatchObserver):
    """The batch queue's observer for one model version; ``by_priority`` adds the priority label."""

    metrics: Metrics
    model: str
    version: str
    by_priority: bool = False

    def __post_init__(self):
        m = self.metrics
        if self.by_priority:
            self._depths: dict[int, LiveCount] = {}
            self._waits: dict[int, object] = {}
            self.queue_depth = self._level_depth
            self.queue_wait = self._level_wait
        else:
            self._depth = m.queue_depth.live(self.model)
            self._wait = m.queue_wait.observer(self.model)
        self._compute = m.batch_compute.labels(self.model, self.version)
        self._size = m.batch_size.labels(self.model)
        self._images = m.images.labels(self.model, self.version)
        self._batches = m.batches.labels(self.model, self.version)

    def queue_depth(self, delta_images: int, level: int = 0) -> None:
        self._depth.value += delta_images

    def queue_wait(self, seconds: float, level: int = 0) -> None:
        self._wait(seconds)

    def _level_depth(self, delta_images: int, level: int = 0) -> None:
        count = self._depths.get(level)
        if count is None:
            count = self._depths[level] = self.metrics.queue_depth.live(self.model, level)
        count.value += delta_images

    def _level_wait(self, seconds: float, level: int = 0) -> None:
        observe = self._waits.get(level)
        if observe is None:
            observe = self._waits[level] = self.metrics.queue_wait.observer(self.model, level)
        observe(seconds)

    def batch_done(self, images: int, compute_seconds: float) -> None:
        self._compute.observe(compute_seconds)
        self._size.observe(images)
        self._images.inc(images)
        self._batches.inc()


@dataclass
class RequestTracker:
    """Times one request: in-flight while open, then its duration and status code.

    Set ``model`` once the request's model is known (it stays UNKNOWN_MODEL otherwise) and
    ``code`` to the gRPC status name it is answered with.
    """

    metrics: Metrics
    api: str
    model: str = UNKNOWN_MODEL
    code: str = "OK"
    _start: float = field(default=0.0, repr=False)
    _inflight: SharedCount | None = field(default=None, repr=False)

    def __enter__(self) -> "RequestTracker":
        self._start = time.perf_counter()
        return self

    def known_model(self, model: str) -> None:
        """The request names this (existing) model: it is in flight for that model from now on."""
        self.model = model
        self._inflight = self.metrics.live(self.metrics.inflight, model)
        self._inflight.add(1)

    def __exit__(self, exc_type, exc, tb) -> None:
        elapsed = time.perf_counter() - self._start
        m = self.metrics
        if self._inflight is not None:
            self._inflight.add(-1)
        if exc_type is not None and self.code == "OK":
            self.code = "CANCELLED" if exc_type.__name__ == "CancelledError" else "INTERNAL"
        m.child(m.requests, self.model, self.api, self.code).inc()
        m.child(m.request_duration, self.model, self.api).observe(elapsed)
