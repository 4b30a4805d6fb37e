"""The service's Prometheus metrics, read from a real server's /metrics port while it serves:
counters move by exactly the requests and images sent, histograms count each request and batch,
failures land under their gRPC status code, and the families are those of docs/DESIGN.md."""
from __future__ import annotations

import http.client
import math
import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from prometheus_client.parser import text_string_to_metric_families

from service import client
from service.generated.convnet.v1 import convnet_pb2 as pb
from service.metrics import UNKNOWN_MODEL

ROOT = Path(__file__).resolve().parents[2]
MODEL = "cifar-tiny"

# What each sequential-request test reads before and after, with the labels that pick one series.
SERIES = {
    "ok": ("convnet_requests_total", {"model": MODEL, "api": "classify", "code": "OK"}),
    "images": ("convnet_images_total", {"model": MODEL, "version": "1"}),
    "batches": ("convnet_batches_total", {"model": MODEL, "version": "1"}),
    "duration_count": ("convnet_request_duration_seconds_count", {"model": MODEL, "api": "classify"}),
    "duration_sum": ("convnet_request_duration_seconds_sum", {"model": MODEL, "api": "classify"}),
    "duration_inf": ("convnet_request_duration_seconds_bucket", {"model": MODEL, "api": "classify", "le": "+Inf"}),
    "wait_count": ("convnet_queue_wait_seconds_count", {"model": MODEL}),
    "compute_count": ("convnet_batch_compute_seconds_count", {"model": MODEL, "version": "1"}),
    "size_count": ("convnet_batch_size_count", {"model": MODEL}),
    "size_sum": ("convnet_batch_size_sum", {"model": MODEL}),
    "size_le_2": ("convnet_batch_size_bucket", {"model": MODEL, "le": "2.0"}),
    "size_le_4": ("convnet_batch_size_bucket", {"model": MODEL, "le": "4.0"}),
}


def snapshot(server) -> dict[str, float]:
    return {key: server.metric(name, **labels) for key, (name, labels) in SERIES.items()}


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before[key] for key in before}


def request(k: int, seed: int, model: str = MODEL, version: int = 0) -> pb.ClassifyRequest:
    x = np.random.default_rng(seed).standard_normal((k, 3, 32, 32)).astype(np.float32)
    return pb.ClassifyRequest(model=model, version=version, tensor=client.tensor_message(x))


def status_of(stub, req: pb.ClassifyRequest) -> str:
    try:
        stub.Classify(req, timeout=30)
    except grpc.RpcError as err:
        return err.code().name
    return "OK"


def families(server) -> dict[str, str]:
    """Metric family name -> type, as exposed."""
    return {f.name: f.type for f in text_string_to_metric_families(server.metrics_text())}


def test_sequential_requests_move_counters_by_n_and_n_times_k(server):
    n, k = 7, 3
    stub = client.connect(server.target)
    before = snapshot(server)
    for i in range(n):
        assert len(stub.Classify(request(k, i), timeout=30).results) == k
    moved = delta(before, snapshot(server))
    assert moved["ok"] == n
    assert moved["images"] == n * k
    assert moved["duration_count"] == n and moved["duration_inf"] == n and moved["duration_sum"] > 0
    assert moved["wait_count"] == n
    # One caller at a time: every request is a batch of its own, of k images (2 < k <= 4).
    assert moved["batches"] == moved["compute_count"] == moved["size_count"] == n
    assert moved["size_sum"] == n * k
    assert moved["size_le_2"] == 0 and moved["size_le_4"] == n
    assert server.metric("convnet_inflight_requests", model=MODEL) == 0
    assert server.metric("convnet_queue_depth", model=MODEL) == 0


def test_concurrent_requests_count_every_image_once_whatever_the_batches(server):
    n, k = 48, 2
    stub = client.connect(server.target)
    before = snapshot(server)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: len(stub.Classify(request(k, 100 + i), timeout=30).results), range(n)))
    assert answers == [k] * n
    moved = delta(before, snapshot(server))
    assert moved["ok"] == moved["duration_count"] == moved["wait_count"] == n
    assert moved["images"] == moved["size_sum"] == n * k
    assert 1 <= moved["batches"] <= n
    assert moved["batches"] == moved["compute_count"] == moved["size_count"]


def test_failures_land_under_their_status_code(server):
    stub = client.connect(server.target)
    code = lambda c, m=MODEL: server.metric("convnet_requests_total", model=m, api="classify", code=c)
    before = snapshot(server)
    invalid, not_found, unknown = code("INVALID_ARGUMENT"), code("NOT_FOUND"), code("NOT_FOUND", UNKNOWN_MODEL)
    bad_shape = pb.ClassifyRequest(model=MODEL, tensor=client.tensor_message(np.zeros((1, 3, 8, 8), np.float32)))
    assert [status_of(stub, bad_shape) for _ in range(3)] == ["INVALID_ARGUMENT"] * 3
    assert status_of(stub, request(65, 0)) == "INVALID_ARGUMENT"        # over max_batch_size 64
    assert status_of(stub, request(1, 0, version=9)) == "NOT_FOUND"     # no such version
    assert [status_of(stub, request(1, 0, model="no-such-model")) for _ in range(2)] == ["NOT_FOUND"] * 2
    assert code("INVALID_ARGUMENT") - invalid == 4
    assert code("NOT_FOUND") - not_found == 1
    assert code("NOT_FOUND", UNKNOWN_MODEL) - unknown == 2
    moved = delta(before, snapshot(server))
    assert moved["ok"] == 0 and moved["images"] == 0 and moved["batches"] == 0
    assert moved["duration_count"] == 5    # failed requests are timed too; the unknown model's apart


def test_stream_and_kserve_requests_count_under_their_api(server):
    n, k = 5, 2
    stub = client.connect(server.target)
    api = lambda a: server.metric("convnet_requests_total", model=MODEL, api=a, code="OK")
    images = lambda: server.metric("convnet_images_total", model=MODEL, version="1")
    stream_before, kserve_before, images_before = api("classify_stream"), api("kserve"), images()
    replies = list(stub.ClassifyStream(iter([request(k, i) for i in range(n)]), timeout=30))
    assert [len(r.results) for r in replies] == [k] * n
    kserve = triton.InferenceServerClient(server.target)
    for i in range(n):
        x = np.random.default_rng(i).standard_normal((k, 3, 32, 32)).astype(np.float32)
        tensor = triton.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        assert kserve.infer(MODEL, [tensor]).as_numpy("scores").shape == (k, 10)
    kserve.close()
    assert api("classify_stream") - stream_before == n
    assert api("kserve") - kserve_before == n
    assert images() - images_before == 2 * n * k
    assert server.metric("convnet_request_duration_seconds_count", model=MODEL, api="kserve") >= n


def design_metrics() -> dict[str, str]:
    """Metric name -> type from the table in docs/DESIGN.md's Metrics section."""
    section = (ROOT / "docs" / "DESIGN.md").read_text().split("## Metrics", 1)[1].split("\n## ", 1)[0]
    return {name: kind for name, kind in re.findall(r"^\| `(convnet_\w+)` \| (\w+)", section, re.M)}


def design_seconds_buckets() -> list[float]:
    section = (ROOT / "docs" / "DESIGN.md").read_text().split("## Metrics", 1)[1].split("\n## ", 1)[0]
    listed = section.split("buckets 100 us .. 10 s:", 1)[1].split("\n\n", 1)[0]
    return [float(v) for v in re.findall(r"\d+(?:\.\d+)?(?:e-?\d+)?", listed)]


def test_families_and_buckets_are_those_of_the_design(server):
    exposed = families(server)
    design = design_metrics()
    assert len(design) == 11
    for name, kind in design.items():
        # The text format: the parser names a counter family without _total, and an info metric
        # travels as the gauge <name>_info.
        family, wire = {"counter": (name.removesuffix("_total"), kind),
                        "info": (name + "_info", "gauge")}.get(kind, (name, kind))
        assert exposed.get(family) == wire, (name, kind, exposed.get(family))
    les = lambda name: sorted({float(s.labels["le"]) for f in text_string_to_metric_families(server.metrics_text())
                               for s in f.samples if s.name == name + "_bucket"})
    seconds = design_seconds_buckets()
    assert seconds[0] == 1e-4 and seconds[-1] == 10 and len(seconds) == 16
    for name in ("convnet_request_duration_seconds", "convnet_queue_wait_seconds", "convnet_batch_compute_seconds"):
        assert les(name) == seconds + [math.inf], name
    assert les("convnet_batch_size") == [2.0 ** i for i in range(10)] + [math.inf]


def test_every_loaded_model_is_ready_with_its_info(server):
    for model in ("cifar-tiny", "cifar-vgg"):
        assert server.metric("convnet_model_ready", model=model, version="1") == 1
        assert server.metric("convnet_model_info", model=model, version="1",
                             providers="CPUExecutionProvider", max_batch_size="64") == 1


def test_metrics_are_served_on_their_own_port_only(server):
    assert "convnet_requests_total" in server.metrics_text()
    # The gRPC port answers an HTTP/1.1 GET with an HTTP/2 frame, not a status line.
    with pytest.raises(http.client.HTTPException):
        urllib.request.urlopen(f"http://{server.target}/metrics", timeout=5).read()
