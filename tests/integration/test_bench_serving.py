"""bench/serving.py as a process: it refuses overlapping cores, and one short real run."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_server_and_client_cores_must_not_overlap():
    done = subprocess.run([sys.executable, "-m", "bench.serving", "--server-cores", "0", "--client-cores", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert done.returncode == 2
    assert "--server-cores/--client-cores: expected two disjoint sets of the cores" in done.stderr
    assert "got [0] and [0]" in done.stderr


@pytest.mark.slow
def test_a_short_real_run_prints_every_column_and_target(model_repo):
    """cifar-tiny, one image per request, C = 1, 8 and 64, a fraction of a second per cell, one round."""
    done = subprocess.run([sys.executable, "-m", "bench.serving", "--models", str(model_repo), "--model", "cifar-tiny",
                           "--batches", "1", "--concurrency", "1", "8", "64", "--duration", "0.3", "--warmup", "0",
                           "--target-rounds", "1"], cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| cifar-tiny | 1 |")]
    served = [r for r in rows if len(r) == 14]
    assert [int(r[2]) for r in served] == [1, 8, 64]
    rounds = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| 1 | ")]
    assert len(rounds) == 1 and len(rounds[0]) == 7 and all(float(x.replace(",", "")) > 0 for x in rounds[0])
    assert "median over 1 interleaved rounds" in done.stdout
    assert "the floor of this design (echo --compute)" in done.stdout
    assert [r for r in rows if len(r) == 4][0][1].strip() == "1"  # the in-process row at batch 1
    assert "C=1 served p50 <= in-process + echo p50 + 0.3 ms (cifar-tiny, B=1)" in done.stdout
    assert "floor (echo, busy" in done.stdout and "the server's own compute per batch in this run" in done.stdout
    assert "floor with the real compute (echo --compute)" in done.stdout
    assert "batching on >= batching off (images/s) at every C >= 8" in done.stdout
    assert "errors 0" in done.stdout and "errors 1" not in done.stdout
