"""The arithmetic and the table of the A/B benchmark (bench/revisions.py): per cell the median
images/s of each revision's server, batching on and off, and the ratios between them.

A ratio of two servers (head/base, on/off) is the median of the per-round ratios: the two runs of a
round follow one another within seconds, so the machine's drift over minutes cancels in each
round's ratio and the median takes out a round that a busy spell fell on. On/in-process divides the
median images/s by the one in-process run of the model at batch B.
"""
from __future__ import annotations

import argparse
import re
import statistics
from dataclasses import dataclass

LABELS = ("base", "head")
MODES = ("on", "off")
# A cell's runs in a round: the two revisions' servers side by side, batching on, then off.
KINDS = tuple((label, mode) for mode in MODES for label in LABELS)


@dataclass(frozen=True)
class Cell:
    """What the load generator sends: the model, B images per request, C calls in flight."""

    model: str
    batch: int
    concurrency: int

    def __str__(self) -> str:
        return f"{self.model} B={self.batch} C={self.concurrency}"


DEFAULT_CELLS = (Cell("cifar-vgg", 8, 8), Cell("cifar-vgg", 8, 64), Cell("cifar-vgg", 1, 64),
                 Cell("cifar-tiny", 1, 64), Cell("cifar-tiny", 8, 64))


def parse_cell(text: str) -> Cell:
    """``MODEL:B:C``, e.g. ``cifar-vgg:8:64`` (an argparse type)."""
    match = re.fullmatch(r"([\w.-]+):(\d+):(\d+)", text.strip())
    if not match or int(match[2]) < 1 or int(match[3]) < 1:
        raise argparse.ArgumentTypeError(f"expected MODEL:B:C with B, C >= 1, e.g. cifar-vgg:8:64, got {text!r}")
    return Cell(match[1], int(match[2]), int(match[3]))


@dataclass(frozen=True)
class Ratio:
    """The median of per-round ratios and their range."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, numerators: list[float], denominators: list[float]) -> Ratio:
        ratios = [n / d if d else float("nan") for n, d in zip(numerators, denominators, strict=True)]
        return cls(statistics.median(ratios), min(ratios), max(ratios))

    def __str__(self) -> str:
        if self.low == self.high:
            return f"{self.median:.2f}"
        return f"{self.median:.2f} ({self.low:.2f}-{self.high:.2f})"


@dataclass(frozen=True)
class Row:
    """One cell's figures: images/s per (label, mode), medians over the rounds, and the ratios."""

    cell: Cell
    in_process: float
    images_per_s: dict[tuple[str, str], float]
    head_over_base: dict[str, Ratio]  # per mode
    on_over_off: dict[str, Ratio]  # per label
    errors: int

    def on_over_in_process(self, label: str) -> float:
        return self.images_per_s[label, "on"] / self.in_process


def summarize(cells: list[Cell], runs: dict[tuple[Cell, str, str], list[dict]],
              compute: dict[str, dict[int, dict]]) -> list[Row]:
    """Rows from each cell's runs (``runs[cell, label, mode]``, one load result a round) and the
    in-process figures (``compute[model][batch]["images_per_s"]``)."""
    rows = []
    for cell in cells:
        speed = {kind: [r["images_per_s"] for r in runs[(cell, *kind)]] for kind in KINDS}
        rows.append(Row(
            cell, compute[cell.model][cell.batch]["images_per_s"],
            {kind: statistics.median(values) for kind, values in speed.items()},
            {mode: Ratio.of(speed["head", mode], speed["base", mode]) for mode in MODES},
            {label: Ratio.of(speed[label, "on"], speed[label, "off"]) for label in LABELS},
            sum(r["error_count"] for kind in KINDS for r in runs[(cell, *kind)])))
    return rows


COLUMNS = ("model", "B", "C", "in-process", "base on", "head on", "head/base on", "base off", "head off",
           "head/base off", "on/off base", "on/off head", "on/in-process base", "on/in-process head", "errors")


def table(rows: list[Row]) -> str:
    """The markdown table of the rows (images/s rounded, ratios to two places with their range)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        ips = row.images_per_s
        cells = [row.cell.model, row.cell.batch, row.cell.concurrency, f"{row.in_process:,.0f}",
                 f"{ips['base', 'on']:,.0f}", f"{ips['head', 'on']:,.0f}", row.head_over_base["on"],
                 f"{ips['base', 'off']:,.0f}", f"{ips['head', 'off']:,.0f}", row.head_over_base["off"],
                 row.on_over_off["base"], row.on_over_off["head"], f"{row.on_over_in_process('base'):.2f}",
                 f"{row.on_over_in_process('head'):.2f}", row.errors]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)
