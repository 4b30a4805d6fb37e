"""bench/vs_triton_table.py: per-cell medians, ratios as the median of the rounds' ratios, the
issue's targets judged in the right direction, and the table that says met or MISSED."""
from __future__ import annotations

import math
import statistics

from bench.vs_triton_table import (ECHO, OURS, TRITON, TRITON_1, Cell, reference_lines, summarize, table, targets_line,
                                   targets_of)


def run(images_per_s: float, p50: float, p99: float = 10.0, errors: int = 0) -> dict:
    return {"images_per_s": images_per_s, "latency_ms": {"p50": p50, "p99": p99}, "errors": errors}


def test_ratio_is_the_median_of_the_rounds_ratios_not_the_ratio_of_medians():
    cell = Cell("cifar-vgg", "h2load", 64)
    ours = [run(100, 5), run(300, 5), run(200, 5)]
    triton = [run(100, 5), run(100, 5), run(400, 5)]
    (row,) = summarize({(cell, OURS): ours, (cell, TRITON): triton})
    assert row.figures[OURS].images_per_s == 200 and (row.figures[OURS].low, row.figures[OURS].high) == (100, 300)
    rounds = [o["images_per_s"] / t["images_per_s"] for o, t in zip(ours, triton)]  # 1.0, 3.0, 0.5
    assert row.ratio.median == statistics.median(rounds) == 1.0
    assert (row.ratio.low, row.ratio.high) == (0.5, 3.0)
    (target, ratio, met) = row.verdicts[0]
    assert target.bound == 0.9 and ratio.median == 1.0 and met


def test_a_throughput_target_missed_below_its_bound():
    cell = Cell("cifar-tiny", "tritonclient", 64)
    (row,) = summarize({(cell, OURS): [run(500, 20)], (cell, TRITON): [run(1000, 10)]})
    assert [(t.bound, r.median, met) for t, r, met in row.verdicts] == [(0.6, 0.5, False)]
    assert "**MISSED**" in table([row]) and "0.50" in table([row])


def test_the_latency_target_is_met_at_or_below_its_bound():
    cell = Cell("cifar-tiny", "h2load", 1)
    (fast,) = summarize({(cell, OURS): [run(900, 1.3)], (cell, TRITON): [run(1000, 1.0)]})
    (slow,) = summarize({(cell, OURS): [run(900, 1.4)], (cell, TRITON): [run(1000, 1.0)]})
    assert [t.measure for t, _, _ in fast.verdicts] == ["p50"]
    assert fast.verdicts[0][2] and not slow.verdicts[0][2]
    assert fast.p50_ratio.median == 1.3


def test_the_echo_target_compares_ours_with_the_echo_and_references_are_listed():
    cell = Cell("cifar-tiny", "h2load", 64)
    (row,) = summarize({(cell, OURS): [run(900, 30), run(800, 30)], (cell, TRITON): [run(1000, 20), run(1000, 20)],
                        (cell, ECHO): [run(1000, 10), run(1250, 10)],
                        (cell, TRITON_1): [run(300, 20, errors=2), run(300, 20)]})
    by_bound = {t.bound: (r.median, met) for t, r, met in row.verdicts}
    assert by_bound == {0.6: (statistics.median([0.9, 0.8]), True), 0.85: (statistics.median([0.9, 0.64]), False)}
    lines = reference_lines([row])
    assert len(lines) == 2 and "echo" in lines[0] and "errors 2" in lines[1]
    assert row.errors == 2


def test_cells_without_a_target_have_none_and_errors_show():
    cell = Cell("fashion", "http", 8)
    assert targets_of(cell) == []
    (row,) = summarize({(cell, OURS): [run(10, 1, errors=3)], (cell, TRITON): [run(10, 1)]})
    assert row.verdicts == [] and table([row]).splitlines()[-1].endswith("| 3 |")


def test_a_round_without_answers_is_left_out_of_the_latency_figures():
    cell = Cell("cifar-tiny", "h2load", 1)
    silent = {"images_per_s": 0.0, "latency_ms": {"p50": math.nan, "p99": math.nan}, "errors": 0}
    (row,) = summarize({(cell, OURS): [run(900, 1.4), silent, run(900, 1.6)],
                        (cell, TRITON): [run(1000, 1.0), run(1000, 1.0), run(1000, 1.0)]})
    assert row.figures[OURS].p50_ms == statistics.median([1.4, 1.6]) == row.p50_ratio.median
    assert (row.p50_ratio.low, row.p50_ratio.high) == (1.4, 1.6)
    assert targets_line([row]) == "Targets: 0 of 1 target cells met; missed: cifar-tiny h2load c=1 (p50 ours/Triton <= 1.3)."
