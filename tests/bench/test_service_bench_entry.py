"""`python -m service bench` is a thin entry into bench/ (tooling of a checkout, not installed): where
bench/ cannot be imported, as in the server image, it says so and every other command still works."""
from __future__ import annotations

import os
import subprocess
import sys


def run(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-m", "service", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=540)


def test_without_the_checkout_bench_says_where_it_lives_and_serve_still_parses(tmp_path):
    done = run("bench", "--target", "127.0.0.1:1", cwd=tmp_path)
    assert done.returncode == 2
    assert "tooling of a source checkout (bench/)" in done.stderr
    assert run("serve", "--help", cwd=tmp_path).returncode == 0


def test_in_the_checkout_bench_takes_its_flags(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = run("bench", "--help", cwd=root)
    assert done.returncode == 0 and "--concurrency" in done.stdout
