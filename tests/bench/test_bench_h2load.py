"""bench/h2load.py: the request files decode with tritonclient's own KServe messages, the command
line asks for what each protocol needs, and h2load's report and per-request log parse to the
figures a hand count gives."""
from __future__ import annotations

import base64
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as triton_kpb  # the KServe messages as stock clients have them

from bench import h2load

ROOT = Path(__file__).resolve().parents[2]

# h2load 1.52.0 against this server: 8 streams, 0.5 s warm-up, 1 s measured.
SAMPLE = """starting benchmark...
spawning thread #0: 1 total client(s). Timing-based test with 0.5s of warm-up time and 1s of main duration for measurements.
Warm-up started for thread #0.
progress: 100% of clients started
Application protocol: h2c
Warm-up phase is over for thread #0.
Main benchmark duration is started for thread #0.
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 1.50s, 417.00 req/s, 81.23KB/s
requests: 417 total, 417 started, 417 done, 415 succeeded, 2 failed, 1 errored, 0 timeout
status codes: 415 2xx, 0 3xx, 0 4xx, 2 5xx
traffic: 81.23KB (83175) total, 1.98KB (2025) headers (space savings 96.15%), 52.05KB (53300) data
                     min         max         mean         sd        +/- sd
time for request:     8.35ms     35.56ms     19.00ms      5.33ms    66.67%
time for connect:        0us         0us         0us         0us     0.00%
time to 1st byte:        0us         0us         0us         0us     0.00%
req/s           :     416.71      416.71      416.71        0.00   100.00%
"""

ENCODE = r"""
import base64, json, sys
import numpy as np
from bench import h2load
x = np.arange(2 * 3 * 4 * 4, dtype="<f4").reshape(2, 3, 4, 4)
out = {}
for name, make in (("grpc", h2load.grpc_request), ("http", h2load.http_request)):
    r = make("cifar-tiny", x, "input", "scores")
    out[name] = {"body": base64.b64encode(r.body).decode(), "path": r.path, "headers": r.headers,
                 "images": r.images, "h1": r.h1}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def encoded() -> dict:
    """The requests as bench/h2load.py writes them, made in a fresh process (its KServe stubs and
    tritonclient's cannot share one)."""
    done = subprocess.run([sys.executable, "-c", ENCODE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def expected_images() -> np.ndarray:
    return np.arange(2 * 3 * 4 * 4, dtype="<f4").reshape(2, 3, 4, 4)


def test_grpc_request_is_one_length_prefixed_model_infer(encoded):
    r = encoded["grpc"]
    body = base64.b64decode(r["body"])
    assert body[0] == 0 and int.from_bytes(body[1:5], "big") == len(body) - 5
    request = triton_kpb.ModelInferRequest.FromString(h2load.unframe(body))
    assert request.model_name == "cifar-tiny"
    assert [(i.name, i.datatype, list(i.shape)) for i in request.inputs] == [("input", "FP32", [2, 3, 4, 4])]
    assert [o.name for o in request.outputs] == ["scores"]
    assert request.raw_input_contents[0] == expected_images().tobytes()
    assert r["path"] == "/inference.GRPCInferenceService/ModelInfer"
    assert r["headers"] == {"content-type": "application/grpc", "te": "trailers"} and not r["h1"] and r["images"] == 2


def test_http_request_carries_a_binary_tensor_after_its_json_header(encoded):
    r = encoded["http"]
    body = base64.b64decode(r["body"])
    head_length = int(r["headers"]["inference-header-content-length"])
    head, raw = json.loads(body[:head_length]), body[head_length:]
    assert head["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [2, 3, 4, 4],
                               "parameters": {"binary_data_size": len(raw)}}]
    assert head["outputs"] == [{"name": "scores", "parameters": {"binary_data": True}}]
    assert raw == expected_images().tobytes()
    assert r["path"] == "/v2/models/cifar-tiny/infer" and r["h1"]


def test_unframe_refuses_what_is_not_one_message():
    with pytest.raises(ValueError, match="gRPC frame"):
        h2load.unframe(b"\x00\x00\x00\x00\x09abc")
    with pytest.raises(ValueError, match="gRPC frame"):
        h2load.unframe(b"\x01\x00\x00\x00\x03abc")
    assert h2load.unframe(h2load.frame(b"abc")) == b"abc"


def test_command_streams_for_grpc_and_connections_for_http(tmp_path):
    grpc_request = h2load.Request(b"x", "/p", {"te": "trailers"}, 1)
    argv = h2load.command(grpc_request, "http://127.0.0.1:1", 64, 2.5, 0.5, tmp_path / "d", tmp_path / "l")
    assert argv[argv.index("-c") + 1] == "1" and argv[argv.index("-m") + 1] == "64" and "--h1" not in argv
    assert argv[argv.index("-D") + 1] == "2500ms" and argv[argv.index("--warm-up-time") + 1] == "500ms"
    assert argv[argv.index("-H") + 1] == "te: trailers" and argv[-1] == "http://127.0.0.1:1/p"
    http_request = h2load.Request(b"x", "/p", {}, 1, h1=True)
    argv = h2load.command(http_request, "http://127.0.0.1:1", 64, 2, 1, tmp_path / "d", tmp_path / "l")
    assert "--h1" in argv and argv[argv.index("-c") + 1] == "64" and argv[argv.index("-m") + 1] == "1"


def test_parse_reads_the_counts_and_the_measured_rate():
    r = h2load.parse(SAMPLE)
    assert (r.done, r.succeeded, r.failed, r.errored) == (417, 415, 2, 1)
    assert r.requests_per_s == 417.0  # over the 1 s measured, not the 1.5 s with the warm-up
    r.images = 8
    assert r.images_per_s == 417.0 * 8


def test_parse_names_what_is_missing():
    with pytest.raises(ValueError, match="finished in"):
        h2load.parse("starting benchmark...\nconnect error\n")


def test_percentiles_of_the_last_measured_answers_only():
    warm_up = [f"1000\t200\t{999_000}" for _ in range(5)]  # 999 ms each: must not count
    measured = [f"{2000 + i}\t200\t{1000 * (i + 1)}" for i in range(100)]  # 1 .. 100 ms
    failed = ["3000\t503\t5000000"]
    log = "\n".join(warm_up + measured + failed) + "\n"
    figures = h2load.percentiles(log, measured=101)
    values = sorted(float(i + 1) for i in range(100))
    assert figures["p50"] == values[49] and figures["p99"] == values[98] and figures["p100"] == 100.0
    assert figures["mean"] == pytest.approx(np.mean(values))
    assert all(math.isnan(v) for v in h2load.percentiles(log, measured=0).values())
    assert all(math.isnan(v) for v in h2load.percentiles("1\t503\t10\n", measured=1).values())
