"""What a load-generator run measured: counts by status, requests/s, images/s and latency percentiles.

Percentiles, here and in every benchmark, are ``percentile``'s: NumPy's, by the nearest-rank rule
(the smallest recorded value that at least p % of the values do not exceed), so every reported
figure is a latency some request really had.
Latencies are of successful (OK) requests; failures are counted by status code.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

PERCENTILES = (50.0, 90.0, 99.0)
OK = "OK"


PERCENTILE_RULE = "inverted_cdf"
"""NumPy's name for the nearest-rank rule."""


def percentile(values: Iterable[float], p: float) -> float:
    """The p-th percentile (0 < p <= 100) of ``values`` (any order) by the nearest-rank rule
    (NumPy's ``inverted_cdf``); NaN when there are none."""
    if not 0 < p <= 100:
        raise ValueError(f"percentile: expected 0 < p <= 100, got {p!r}")
    array = np.fromiter(values, dtype=float)
    return float(np.percentile(array, p, method=PERCENTILE_RULE)) if array.size else math.nan


@dataclass
class Recorder:
    """Collects one entry per finished request: its status code name and, if OK, its latency."""

    latencies: list[float] = field(default_factory=list)
    codes: Counter = field(default_factory=Counter)

    def record(self, code: str, latency_s: float) -> None:
        self.codes[code] += 1
        if code == OK:
            self.latencies.append(latency_s)

    @property
    def finished(self) -> int:
        return sum(self.codes.values())


@dataclass(frozen=True)
class Summary:
    """The figures of one run, as printed and as written by ``--json``."""

    sent: int
    ok: int
    errors: dict[str, int]
    elapsed_s: float
    requests_per_s: float
    images_per_s: float
    latency_ms: dict[str, float]  # p50, p90, p99, max, mean

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def to_dict(self) -> dict:
        return {"sent": self.sent, "ok": self.ok, "errors": dict(self.errors), "error_count": self.error_count,
                "elapsed_s": self.elapsed_s, "requests_per_s": self.requests_per_s,
                "images_per_s": self.images_per_s, "latency_ms": dict(self.latency_ms)}


def summarize(latencies_s: Iterable[float], codes: Mapping[str, int], elapsed_s: float,
              images_per_request: int, sent: int | None = None) -> Summary:
    """Throughput of successful requests over ``elapsed_s`` and their latency percentiles (ms).

    ``sent`` is the sender's own count of calls started (default: the number finished); a
    finished run has ``sent == ok + error_count``.
    """
    if elapsed_s <= 0:
        raise ValueError(f"elapsed_s: expected a positive duration, got {elapsed_s!r}")
    ordered = sorted(latencies_s)
    ok = codes.get(OK, 0)
    if ok != len(ordered):
        raise ValueError(f"latencies: expected one per OK request ({ok}), got {len(ordered)}")
    latency = {f"p{p:g}": percentile(ordered, p) * 1e3 for p in PERCENTILES}
    latency["max"] = ordered[-1] * 1e3 if ordered else math.nan
    latency["mean"] = sum(ordered) / len(ordered) * 1e3 if ordered else math.nan
    errors = {code: n for code, n in sorted(codes.items()) if code != OK and n}
    return Summary(sent=sum(codes.values()) if sent is None else sent, ok=ok, errors=errors, elapsed_s=elapsed_s,
                   requests_per_s=ok / elapsed_s, images_per_s=ok * images_per_request / elapsed_s,
                   latency_ms=latency)
