"""bench/vs_triton.py without servers: which cells a run measures, and the section rebuilt from a
run's record (--report-from) with its table, references, incidents and the commit measured."""
from __future__ import annotations

import json

from bench import vs_triton
from bench.vs_triton_table import Cell


def test_long_cells_are_left_out_at_a_short_duration():
    args = vs_triton.parse_args(["--models", "cifar-tiny", "resnet18", "--concurrency", "8", "64",
                                 "--clients", "h2load"])
    cells, skipped = vs_triton.the_cells(args)
    assert skipped == [Cell("resnet18", "h2load", 64)]
    assert cells == [Cell("cifar-tiny", "h2load", 8), Cell("cifar-tiny", "h2load", 64), Cell("resnet18", "h2load", 8)]
    assert vs_triton.seconds_of(args, "resnet18") == 6.0 and vs_triton.seconds_of(args, "cifar-tiny") == 2.0
    cells, skipped = vs_triton.the_cells(vs_triton.parse_args(["--models", "resnet18", "--duration", "10"]))
    assert not skipped and Cell("resnet18", "http", 64) in cells


def run(images_per_s: float, p50: float) -> dict:
    return {"images_per_s": images_per_s, "latency_ms": {"p50": p50, "p99": 2 * p50}, "errors": 0}


def test_the_section_is_rebuilt_from_a_record(tmp_path, capsys):
    argv = ["--models", "cifar-tiny", "--concurrency", "64", "--clients", "h2load", "--rounds", "2"]
    cell = ["cifar-tiny", "h2load", 64]
    record = {"argv": argv + ["--write"], "onnxruntime": "1.32.0", "identical": {"cifar-tiny": "bit-identical"},
              "skipped": [], "incidents": ["triton exited with -11 (log: x)"], "load": [[1, 2, 3], [4, 5, 6]],
              "seconds": 90.0, "design": "Server measured: this checkout at `abc`.",
              "runs": [{"cell": cell, "server": "ours", "runs": [run(600, 40), run(700, 30)]},
                       {"cell": cell, "server": "triton", "runs": [run(1000, 20), run(1000, 20)]},
                       {"cell": cell, "server": "echo", "runs": [run(1000, 10), run(1000, 10)]}]}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(record))
    assert vs_triton.main(["--report-from", str(path)]) == 0
    text = capsys.readouterr().out
    assert "Command: `python -m bench.vs_triton " + " ".join(argv) + "` (1.5 min)" in text
    (row,) = [line for line in text.splitlines() if line.startswith("| cifar-tiny")]
    assert "| 650 (600-700) | 1,000 | 0.65 (0.60-0.70) |" in row
    assert "images/s ours/Triton >= 0.6: 0.65 (0.60-0.70) met" in row
    assert "images/s ours/bare sync grpc echo >= 0.85: 0.65 (0.60-0.70) **MISSED**" in row
    assert "cifar-tiny bit-identical" in text and "triton exited with -11" in text
    assert "bare synchronous grpc echo: 1,000 img/s" in text and "Server measured: this checkout at `abc`." in text
