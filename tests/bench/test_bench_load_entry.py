"""`python -m bench.load` is the load generator's own entry (bench/ is tooling of a checkout, above
the server): it takes its flags, refuses a bad one in one line, and the server's CLI has no bench."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=540)


def test_bench_load_takes_its_flags_and_names_a_bad_value():
    assert "--concurrency" in run("bench.load", "--help").stdout
    done = run("bench.load", "--concurrency", "0", "--target", "127.0.0.1:1")
    assert done.returncode == 2
    assert done.stderr.strip() == "python -m bench.load: error: --concurrency: expected an integer in 1..10000, got 0"


def test_the_servers_cli_has_no_bench_command():
    done = run("service", "bench", "--help")
    assert done.returncode == 2 and "invalid choice: 'bench'" in done.stderr
