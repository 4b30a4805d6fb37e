"""bench/priorities.py's arithmetic and report, on made-up figures (the benchmark itself is a
script, run by hand; see docs/BENCHMARKS.md)."""
from __future__ import annotations

from argparse import Namespace

from bench.priorities import report
from bench.processes import parse_cores


def test_report_states_the_ratio_and_whether_the_target_is_met():
    args = Namespace(duration=5.0, rounds=2, write=False, threads=1, server_cores=parse_cores("0"),
                     client_cores=parse_cores("1"))
    run = lambda ips, ms: {"images_per_s": ips, "high_ms": ms, "batch_ms": 4.0, "mean_batch": 8.0,
                           "high_server": [(m / 4, m / 2) for m in ms]}
    alone, flooded = run(0, [1.0, 2.0, 3.0]), {"on": run(900, [8.0, 9.0]), "off": run(900, [40.0, 44.0])}
    met = report(args, alone, flooded, {"on": [run(960, []), run(980, [])], "off": [run(1000, []), run(1000, [])]})
    assert "median on/off = **0.970**" in met and "met)" in met and "NOT met" not in met
    assert "| under the flood | priorities off | 2 | 40.0 / 44.0 | 10.00 / 11.00 / 11.00 | 20.00 / 22.00 / 22.00 | 5.50 |" in met
    missed = report(args, alone, flooded, {"on": [run(900, []), run(900, [])], "off": [run(1000, []), run(1000, [])]})
    assert "**0.900**" in missed and "NOT met" in missed
