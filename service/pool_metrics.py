"""One /metrics for a pool of workers: the sum of what each worker's own /metrics reports.

Why not prometheus_client's multiprocess mode: the server's busiest gauges and the queue-wait
histogram are custom collectors read at scrape time (service.metrics: ``LiveCount``,
``QueueGauge``, ``QueueHistogram``) and the model info is an ``Info``; multiprocess mode sees none of
them (it only reads the mmap files of its own metric classes). So each worker keeps its registry
and serves it on a port of its own, and the parent parses those expositions and sums them:

- counters and histograms are summed, and a worker that exits keeps its share: its last scraped
  counts are carried into ``retired`` (the parent scrapes every worker every ``SCRAPE_S`` seconds,
  so a killed worker loses at most that much of its counts; a graceful stop loses none but what
  its last requests added since);
- gauges are summed over the live workers (in-flight requests, queue depth), except those of
  ``GAUGE_MODES``: a model version is ready in the pool (``min``) only when every worker serves it;
- ``_created`` samples are left out (one per worker, their sum means nothing).

Samples keep the order in which the workers wrote them.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

SCRAPE_S = 1.0
GAUGE_MODES = {"convnet_model_ready": min, "convnet_model_info": max}
"""Gauges combined other than by a sum over the live workers."""
CUMULATIVE = ("counter", "histogram", "summary")
"""Family types whose samples only grow: a worker's last counts outlive it."""

SampleKey = tuple[str, tuple[tuple[str, str], ...]]


@dataclass
class Exposition:
    """One scrape, parsed: per family its type and help, per sample (name, labels) its value."""

    families: dict[str, tuple[str, str]] = field(default_factory=dict)
    samples: dict[SampleKey, tuple[str, float]] = field(default_factory=dict)
    """(sample name, sorted labels) -> (family name, value)."""

    @classmethod
    def parse(cls, text: str) -> "Exposition":
        exposition = cls()
        for family in text_string_to_metric_families(text):
            if family.name.endswith("_created"):  # the text format gives them families of their own
                continue
            exposition.families[family.name] = (family.type, family.documentation)
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                exposition.samples[(sample.name, tuple(sorted(sample.labels.items())))] = (family.name, sample.value)
        return exposition

    def cumulative(self) -> "Exposition":
        """Only the counters and histograms: what a worker that exits leaves to the pool's totals."""
        kept = Exposition({n: f for n, f in self.families.items() if f[0] in CUMULATIVE})
        kept.samples = {k: v for k, v in self.samples.items() if v[0] in kept.families}
        return kept

    def add(self, other: "Exposition") -> None:
        """Add ``other``'s samples to these (both cumulative)."""
        self.families.update(other.families)
        for key, (family, value) in other.samples.items():
            self.samples[key] = (family, self.samples.get(key, (family, 0.0))[1] + value)


def combine(live: Iterable[Exposition], retired: Exposition | None = None) -> list[Metric]:
    """The pool's families: the live workers' expositions and the retired counts, combined as the
    module docstring says."""
    live = list(live)
    families: dict[str, tuple[str, str]] = {}
    for exposition in (*live, *([retired] if retired is not None else [])):
        families.update(exposition.families)
    values: dict[SampleKey, list[float]] = {}
    family_of: dict[SampleKey, str] = {}
    for exposition in live:
        for key, (family, value) in exposition.samples.items():
            values.setdefault(key, []).append(value)
            family_of[key] = family
    totals: dict[SampleKey, float] = {}
    for key, found in values.items():
        mode = GAUGE_MODES.get(family_of[key])
        if mode is None:
            totals[key] = sum(found)
        else:  # a worker without the series counts as 0 (it does not serve that version)
            totals[key] = mode(found + [0.0] * (len(live) - len(found)))
    if retired is not None:
        for key, (family, value) in retired.samples.items():
            totals[key] = totals.get(key, 0.0) + value
            family_of[key] = family
    metrics = {name: Metric(name, documentation, kind) for name, (kind, documentation) in families.items()}
    for (sample, labels), value in totals.items():
        metrics[family_of[(sample, labels)]].add_sample(sample, dict(labels), value)
    return list(metrics.values())


class PoolMetrics:
    """The workers' last expositions by incarnation (one process of a worker slot), and the retired totals."""

    def __init__(self):
        self.last: dict[int, Exposition] = {}
        """pid -> its latest exposition."""
        self.retired = Exposition()

    def scraped(self, pid: int, text: str) -> Exposition:
        exposition = self.last[pid] = Exposition.parse(text)
        return exposition

    def exited(self, pid: int) -> None:
        """The process ``pid`` is gone: its counts stay in the totals, its gauges leave."""
        last = self.last.pop(pid, None)
        if last is not None:
            self.retired.add(last.cumulative())

    def families(self, live_pids: Iterable[int]) -> list[Metric]:
        return combine([self.last[pid] for pid in live_pids if pid in self.last], self.retired)


def render(families: Iterable[Metric]) -> bytes:
    """The text exposition of ``families``, as prometheus_client writes it."""
    from prometheus_client import CollectorRegistry, generate_latest

    class _Fixed:
        def __init__(self, metrics):
            self.metrics = metrics

        def collect(self):
            return self.metrics

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(list(families)))
    return generate_latest(registry)
