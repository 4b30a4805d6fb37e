"""bench/overheads.py: a short real run measures every piece; figures are positive, never compared."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def overheads(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.overheads", *flags], cwd=ROOT, capture_output=True, text=True,
                          timeout=540)


@pytest.mark.slow
def test_a_short_run_measures_every_piece(model_repo):
    done = overheads("--models", str(model_repo), "--model", "cifar-tiny", "--callers", "1", "4",
                     "--seconds", "0.2", "--count", "20")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {cells[1].strip(): float(cells[2]) for line in done.stdout.splitlines()
            if (cells := line.split("|")[1:-1]) and len(cells) == 3 and re.fullmatch(r" [\d.]+ ", cells[2])}
    assert set(rows) == {
        "hand-off round trip, loop -> instance thread -> loop (median)",
        "the same on the loop, no thread (median)",
        "compute of 1 image, back-to-back (median)",
        "compute of 1 image after 1 ms idle (median)",
        "handler CPU per request, C=1, with compute", "handler CPU per request, C=1, plumbing only",
        "echo --compute handler CPU per request, C=1, plumbing only",
        "handler CPU per request, C=4, with compute", "handler CPU per request, C=4, plumbing only",
        "echo --compute handler CPU per request, C=4, plumbing only"}
    assert all(value > 0 for name, value in rows.items() if "no thread" not in name)


def test_refuses_a_core_it_may_not_run_on():
    done = overheads("--core", "4096")
    assert done.returncode == 2 and "--core: expected one of" in done.stderr and "got 4096" in done.stderr
