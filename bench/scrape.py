"""The one /metrics reader of the tests and the benchmarks: fetch a Prometheus text page, sum samples.

    scrape(metrics_port)                  -> str   the page of http://127.0.0.1:PORT/metrics
    metric(text, name, **labels)          -> float sum of the samples ``name`` whose labels include ``labels``
    totals(text, names, **labels)         -> dict  several such sums at once, keyed by ``names``' values

Parsing is prometheus_client's own (``text_string_to_metric_families``), so what is read is what
Prometheus reads; a sample absent from the page counts 0.
"""
from __future__ import annotations

import urllib.request
from typing import Mapping

from prometheus_client.parser import text_string_to_metric_families


def scrape(metrics_port: int, host: str = "127.0.0.1", timeout: float = 10) -> str:
    """The metrics page a server serves on ``host:metrics_port``."""
    with urllib.request.urlopen(f"http://{host}:{metrics_port}/metrics", timeout=timeout) as reply:
        return reply.read().decode()


def totals(text: str, names: Mapping[str, str], **labels: str) -> dict[str, float]:
    """For each sample name in ``names``, the sum of its samples whose labels include ``labels``,
    keyed by ``names[sample name]``."""
    sums = dict.fromkeys(names.values(), 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in names and all(sample.labels.get(k) == v for k, v in labels.items()):
                sums[names[sample.name]] += sample.value
    return sums


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels`` (0 when none)."""
    return totals(text, {name: name}, **labels)[name]
