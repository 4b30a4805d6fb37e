"""``python -m bench.load --api http`` loads the REST API like the gRPC APIs: every request it
counts as OK is one the server counted under api="http", binary and JSON alike."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("data", ["binary", "json"])
def test_bench_api_http_counts_what_the_server_counts(server, data):
    before = server.metric("convnet_requests_total", model="cifar-tiny", api="http", code="OK")
    result = subprocess.run([sys.executable, "-m", "bench.load", "--api", "http", "--http-data", data,
                             "--target", f"127.0.0.1:{server.http_port}", "--model", "cifar-tiny", "-c", "4",
                             "--duration", "0.5", "--warmup", "0", "--json"],
                            cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["api"] == "http" and report["http_data"] == data and report["errors"] == {}
    after = server.metric("convnet_requests_total", model="cifar-tiny", api="http", code="OK")
    assert report["ok"] > 0 and after - before == report["ok"] + 1  # + the probe


def test_bench_api_http_names_an_unknown_model(server):
    result = subprocess.run([sys.executable, "-m", "bench.load", "--api", "http", "--target",
                             f"127.0.0.1:{server.http_port}", "--model", "nope", "-d", "0.2"],
                            cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert result.returncode == 1 and "no model named 'nope'" in result.stderr
