"""`python -m bench.variants` end to end: two server variants and the bare echo, one short round of
h2load each; every variant gets its row, with answered calls and CPU per call from its own process."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_each_variant_gets_a_row_of_measured_figures(model_repo):
    done = subprocess.run([sys.executable, "-m", "bench.variants", "--models", str(model_repo), "--rounds", "1",
                           "--duration", "0.5", "--concurrency", "8", "", "--grpc-threads 4", "echo"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {m[1]: m for m in re.finditer(r"^\| (\(defaults\)|--grpc-threads 4|echo) \| ([\d,]+) \(.*?\) \| ([\d.]+) \|",
                                         done.stdout, re.MULTILINE)}
    assert set(rows) == {"(defaults)", "--grpc-threads 4", "echo"}, done.stdout
    for variant, row in rows.items():
        assert int(row[2].replace(",", "")) > 0 and float(row[3]) > 0, (variant, done.stdout)
    assert "round 1/1 --grpc-threads 4:" in done.stdout
