"""The cells, arithmetic, targets and table of the benchmark against Triton (bench/vs_triton.py).

A cell is (model, client, concurrency); each round measures this server ("ours") and Triton back
to back, so a round's ratio compares runs seconds apart and the median of the rounds' ratios takes
out a round that a busy spell of the shared machine fell on. Throughput cells compare images/s
(ours/Triton, higher is better); the c=1 latency target compares p50 (ours/Triton, lower is better).
The targets are issue 23's.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from bench.revisions_table import Ratio

CLIENTS = {"tritonclient": "gRPC, tritonclient.grpc.aio", "h2load": "gRPC, h2load",
           "http": "HTTP/1.1 binary, h2load --h1"}
OURS, TRITON, ECHO, TRITON_1 = "ours", "triton", "echo", "triton-1"
REFERENCES = {ECHO: "bare synchronous grpc echo", TRITON_1: "Triton with one instance"}


@dataclass(frozen=True)
class Cell:
    model: str
    client: str
    concurrency: int

    def __str__(self) -> str:
        return f"{self.model} {self.client} c={self.concurrency}"


@dataclass(frozen=True)
class Target:
    """A goal of the issue on one cell: ``measure`` is "images" (ours/peer images/s >= bound) or
    "p50" (ours/peer p50 latency <= bound); ``peer`` is Triton or the bare synchronous echo."""

    cells: tuple[Cell, ...]
    measure: str
    bound: float
    peer: str = TRITON

    def text(self) -> str:
        what = "p50" if self.measure == "p50" else "images/s"
        peer = "Triton" if self.peer == TRITON else "bare sync grpc echo"
        return f"{what} ours/{peer} {'<=' if self.measure == 'p50' else '>='} {self.bound:g}"


MIN_SECONDS = {"resnet18": 6.0}
"""Measured seconds of at least this much per run for compute-bound models (a resnet18 image takes
tens of ms on one core, so a run of 2 s would time a handful of batches)."""
LONG_CELLS = {("resnet18", 64): 10.0}
"""Cells left out unless --duration is at least this long: a batch of 64 resnet18 images takes
seconds on one core, so a cell of a few seconds would time one or two batches."""


def seconds_of(args, model: str) -> float:
    """Measured seconds of a run of ``model``: --duration, or more for a compute-bound model."""
    return max(args.duration, MIN_SECONDS.get(model, 0.0))


def the_cells(args) -> tuple[list[Cell], list[Cell]]:
    """The cells to measure and the long ones left out at this --duration."""
    grid = [Cell(m, client, c) for m in args.models for c in args.concurrency for client in args.clients]
    skipped = [cell for cell in grid if args.duration < LONG_CELLS.get((cell.model, cell.concurrency), 0)]
    return [cell for cell in grid if cell not in skipped], skipped


def _cells(model: str, clients: tuple[str, ...], concurrency: int) -> tuple[Cell, ...]:
    return tuple(Cell(model, client, concurrency) for client in clients)


GRPC = ("h2load", "tritonclient")
TARGETS = (
    Target(_cells("cifar-tiny", GRPC, 64), "images", 0.6),
    Target(_cells("cifar-tiny", ("h2load",), 64), "images", 0.85, ECHO),
    Target(_cells("fashion", GRPC, 64), "images", 0.6),
    Target(_cells("cifar-vgg", GRPC, 64), "images", 0.9),
    Target(_cells("resnet18", GRPC, 8), "images", 1.0),
    Target(_cells("cifar-tiny", GRPC, 1), "p50", 1.3),
    Target(_cells("cifar-tiny", ("http",), 64), "images", 0.8),
)


def targets_of(cell: Cell) -> list[Target]:
    return [t for t in TARGETS if cell in t.cells]


def latency(runs: list[dict], key: str) -> float:
    """The median of the runs' ``key`` percentile, leaving out runs without one (no answer: NaN)."""
    values = [v for r in runs if not math.isnan(v := r["latency_ms"].get(key, math.nan))]
    return statistics.median(values) if values else math.nan


@dataclass(frozen=True)
class Figures:
    """One server's runs of a cell: median images/s with its range, median p50 and p99 (ms), errors."""

    images_per_s: float
    low: float
    high: float
    p50_ms: float
    p99_ms: float
    errors: int

    @classmethod
    def of(cls, runs: list[dict]) -> Figures:
        speed = [r["images_per_s"] for r in runs]
        return cls(statistics.median(speed), min(speed), max(speed), latency(runs, "p50"), latency(runs, "p99"),
                   sum(r["errors"] for r in runs))

    def speed_text(self) -> str:
        spread = f" ({self.low:,.0f}-{self.high:,.0f})" if self.low != self.high else ""
        return f"{self.images_per_s:,.0f}{spread}"

    def latency_text(self) -> str:
        return f"{self.p50_ms:.2f} / {self.p99_ms:.2f}"


@dataclass(frozen=True)
class Row:
    cell: Cell
    figures: dict[str, Figures]  # per server
    ratio: Ratio  # images/s ours/Triton
    p50_ratio: Ratio  # p50 ours/Triton
    verdicts: list[tuple[Target, Ratio, bool]]

    @property
    def errors(self) -> int:
        return sum(f.errors for f in self.figures.values())


def p50_ratio(ours: list[dict], peer: list[dict]) -> Ratio:
    """p50 ours/peer over the rounds in which both answered (a run without answers has a NaN p50)."""
    pairs = [(o["latency_ms"]["p50"], p["latency_ms"]["p50"]) for o, p in zip(ours, peer, strict=True)]
    pairs = [(o, p) for o, p in pairs if not (math.isnan(o) or math.isnan(p))] or [(math.nan, 1.0)]
    return Ratio.of([o for o, _ in pairs], [p for _, p in pairs])


def verdict(target: Target, runs: dict[str, list[dict]]) -> tuple[Ratio, bool]:
    """The target's ratio over the rounds (median and range) and whether the median meets it."""
    ours, peer = runs[OURS], runs[target.peer]
    if target.measure == "p50":
        ratio = p50_ratio(ours, peer)
        return ratio, ratio.median <= target.bound
    ratio = Ratio.of([r["images_per_s"] for r in ours], [r["images_per_s"] for r in peer])
    return ratio, ratio.median >= target.bound


def summarize(runs: dict[tuple[Cell, str], list[dict]]) -> list[Row]:
    """Rows from each cell's runs (``runs[cell, server]``, one result a round: images_per_s,
    latency_ms p50/p99 and errors), in the order the cells were first measured."""
    rows = []
    for cell in dict.fromkeys(cell for cell, _ in runs):
        by_server = {server: results for (c, server), results in runs.items() if c == cell}
        ours, triton = by_server[OURS], by_server[TRITON]
        rows.append(Row(
            cell, {server: Figures.of(results) for server, results in by_server.items()},
            Ratio.of([r["images_per_s"] for r in ours], [r["images_per_s"] for r in triton]),
            p50_ratio(ours, triton),
            [(t, *verdict(t, by_server)) for t in targets_of(cell) if t.peer in by_server]))
    return rows


COLUMNS = ("model", "client", "c", "ours img/s", "Triton img/s", "ours/Triton", "ours p50 / p99 ms",
           "Triton p50 / p99 ms", "p50 ours/Triton", "target", "errors")


def table(rows: list[Row]) -> str:
    """The markdown table: one line per cell, its targets with their ratio and met/MISSED."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        ours, triton = row.figures[OURS], row.figures[TRITON]
        goals = "; ".join(f"{t.text()}: {ratio} {'met' if ok else '**MISSED**'}" for t, ratio, ok in row.verdicts)
        cells = [row.cell.model, CLIENTS.get(row.cell.client, row.cell.client), row.cell.concurrency,
                 ours.speed_text(), triton.speed_text(), row.ratio, ours.latency_text(), triton.latency_text(),
                 row.p50_ratio, goals or "", row.errors or ""]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def targets_line(rows: list[Row]) -> str:
    """How many of the issue's target cells were met in this run, and which were missed."""
    verdicts = [(row.cell, target, ok) for row in rows for target, _, ok in row.verdicts]
    missed = [f"{cell} ({target.text()})" for cell, target, ok in verdicts if not ok]
    return (f"Targets: {len(verdicts) - len(missed)} of {len(verdicts)} target cells met"
            + (f"; missed: {'; '.join(missed)}." if missed else "."))


def reference_lines(rows: list[Row]) -> list[str]:
    """One line per reference server measured in a cell (the echo, Triton with one instance):
    its images/s, p50 / p99 and ours over it."""
    lines = []
    for row in rows:
        for server, name in REFERENCES.items():
            if server in row.figures:
                f, ours = row.figures[server], row.figures[OURS]
                lines.append(f"- {row.cell}, {name}: {f.speed_text()} img/s, p50 / p99 {f.latency_text()} ms "
                             f"(ours {ours.speed_text()} img/s, ours/{name} "
                             f"{ours.images_per_s / f.images_per_s if f.images_per_s else float('nan'):.2f} by medians)"
                             + (f", errors {f.errors}" if f.errors else ""))
    return lines
