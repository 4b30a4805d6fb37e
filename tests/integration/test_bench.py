"""`python -m bench.load` against a real server and the echo server: short, bounded runs whose counts
must add up, checked against the server's own metrics. No timing assertions (but for the lower bound
that the echo server's --busy-ms promises)."""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as kpb  # the KServe messages as stock clients have them
from tritonclient.grpc import service_pb2_grpc

from bench.launcher import launch
from service.generated.convnet.v1 import convnet_pb2 as pb
from service.generated.convnet.v1 import convnet_pb2_grpc
from test_server_helpers import images, marked

pytestmark = pytest.mark.slow  # load-generator runs against real and echo servers

ROOT = Path(__file__).resolve().parents[2]
MODEL = "cifar-tiny"


def bench(target: str, *flags: str, timeout: float = 540) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.load", "--target", target, *flags], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def bench_json(target: str, *flags: str) -> dict:
    done = bench(target, "--json", "--warmup", "0", *flags)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["sent"] == result["ok"] + result["error_count"]
    assert result["sent"] == result["ok"] + sum(result["errors"].values())
    return result


@contextlib.contextmanager
def running_echo(model_repo, tmp_path, *flags: str, env: dict | None = None):
    """`python -m bench.echo` on a free port, serving; yields its target."""
    command = [sys.executable, "-m", "bench.echo", "--models", str(model_repo), "--port", "0", *flags]
    echo = launch(command, tmp_path, "echo", env=env, timeout=300)
    try:
        yield echo.target
    finally:
        assert echo.stop(timeout=30) == 0


@pytest.fixture
def echo_server(model_repo, tmp_path):
    with running_echo(model_repo, tmp_path) as target:
        yield target


def requests_counted(server, api: str, code: str = "OK") -> float:
    return server.metric("convnet_requests_total", model=MODEL, api=api, code=code)


@pytest.mark.parametrize("api", ["classify", "kserve"])
def test_bench_counts_match_the_server_metrics(server, api):
    ok_before = requests_counted(server, api)
    images_before = server.metric("convnet_images_total", model=MODEL)
    result = bench_json(server.target, "--api", api, "--model", MODEL, "--concurrency", "4", "--batch", "2",
                        "--duration", "30", "--requests", "120")
    assert result["sent"] == 120 == result["ok"]  # the count bound ends the run
    assert result["errors"] == {}
    assert (result["api"], result["model"], result["batch"], result["concurrency"]) == (api, MODEL, 2, 4)
    # the server saw the 120 requests plus the bench's one checking request, 2 images each
    assert requests_counted(server, api) - ok_before == 121
    assert server.metric("convnet_images_total", model=MODEL) - images_before == 2 * 121
    assert result["images_per_s"] == pytest.approx(2 * result["requests_per_s"])


def test_bench_counts_failures_by_status_as_the_server_does(start_server):
    """A queue of one image: concurrent callers are shed with RESOURCE_EXHAUSTED, which both sides count."""
    server = start_server("--max-batch-size", "1", "--max-queue-size", "1", "--instances", "1")
    shed_before = requests_counted(server, "classify", "RESOURCE_EXHAUSTED")
    ok_before = requests_counted(server, "classify")
    result = bench_json(server.target, "--model", MODEL, "--concurrency", "32", "--duration", "30",
                        "--requests", "400")
    assert result["sent"] == 400
    assert set(result["errors"]) <= {"RESOURCE_EXHAUSTED"}
    assert requests_counted(server, "classify", "RESOURCE_EXHAUSTED") - shed_before == result["errors"].get(
        "RESOURCE_EXHAUSTED", 0)
    assert requests_counted(server, "classify") - ok_before == result["ok"] + 1


def test_bench_text_report_and_open_loop(server):
    done = bench(server.target, "--model", MODEL, "--rate", "100", "--duration", "1", "--warmup", "0")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"bench: {MODEL}") and "open loop, 100 requests/s" in lines[0]
    sent, ok, failed = (int(lines[1].split()[i].replace(",", "")) for i in (0, 6, 8))
    assert sent == ok + failed and sent > 0
    assert any(line.strip().startswith("latency ms   p50") for line in lines)


def test_bench_refuses_bad_flags_and_unreachable_servers():
    done = bench("127.0.0.1:1", "--duration", "0")
    assert done.returncode == 2 and "--duration: expected seconds in (0, 3600], got 0.0" in done.stderr
    done = bench("127.0.0.1:1", "--model", MODEL, "--timeout", "1")
    assert done.returncode == 1 and "127.0.0.1:1" in done.stderr and "UNAVAILABLE" in done.stderr


@pytest.mark.parametrize("api", ["classify", "kserve"])
def test_bench_against_the_echo_server(echo_server, api):
    result = bench_json(echo_server, "--api", api, "--model", MODEL, "--concurrency", "8", "--batch", "4",
                        "--duration", "30", "--requests", "200")
    assert (result["sent"], result["ok"], result["errors"]) == (200, 200, {})


def test_echo_replies_are_the_size_of_the_real_ones(server, echo_server):
    """Same request to both: the echo's reply has the real one's shape (results, scores, top-k)."""
    x = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype("<f4")
    request = pb.ClassifyRequest(model=MODEL, top_k=3, request_id="same",
                                 tensor=pb.Tensor(shape=x.shape, data=x.tobytes()))
    replies = []
    for target in (server.target, echo_server):
        with grpc.insecure_channel(target) as channel:
            replies.append(convnet_pb2_grpc.ClassifierStub(channel).Classify(request, timeout=30))
    real, echo = replies
    assert echo.request_id == real.request_id == "same" and echo.model == real.model
    assert len(echo.results) == len(real.results) == 5
    assert [len(r.scores) for r in echo.results] == [len(r.scores) for r in real.results]
    assert [len(r.top) for r in echo.results] == [len(r.top) for r in real.results] == [3] * 5
    # labels differ in length between classes; the rest of the encoding is the same size
    assert abs(echo.ByteSize() - real.ByteSize()) <= 0.1 * real.ByteSize()


def test_echo_busy_ms_holds_every_inference_reply_that_long(model_repo, tmp_path):
    """--busy-ms: the floor of a server whose compute takes that long; both APIs wait for it."""
    x = np.zeros((1, 3, 32, 32), dtype="<f4")
    classify = pb.ClassifyRequest(model=MODEL, tensor=pb.Tensor(shape=x.shape, data=x.tobytes()))
    infer = kpb.ModelInferRequest(model_name=MODEL, inputs=[kpb.ModelInferRequest.InferInputTensor(
        name="input", datatype="FP32", shape=x.shape)], raw_input_contents=[x.tobytes()])
    with running_echo(model_repo, tmp_path, "--busy-ms", "150") as target, grpc.insecure_channel(target) as channel:
        calls = (lambda: convnet_pb2_grpc.ClassifierStub(channel).Classify(classify, timeout=30),
                 lambda: service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(infer, timeout=30))
        for call in calls:
            call()  # connection set up
            start = time.perf_counter()
            call()
            assert time.perf_counter() - start >= 0.150
    done = subprocess.run([sys.executable, "-m", "bench.echo", "--busy-ms", "-1"], cwd=ROOT, capture_output=True,
                          text=True, timeout=540)
    assert done.returncode == 2 and "--busy-ms: expected a number >= 0, got -1" in done.stderr


@pytest.mark.parametrize("flags", [(), ("--compute",)], ids=["plain", "compute"])
def test_echo_compute_runs_each_request_through_the_models_batch_queue(model_repo, tmp_path, flags):
    """--compute: the request's own images reach the model's compute, on both APIs. The fault hook
    (service/faults.py) fails a batch that holds the marked image, so only an echo that computed the
    request's images answers it INTERNAL; the plain echo never looks at them."""
    computes = bool(flags)
    clean, trigger = images(2, seed=0), marked(2, 7.25, seed=0)
    with running_echo(model_repo, tmp_path, *flags, env={"CONVNET_INJECT_FAULT": "7.25"}) as target, \
            grpc.insecure_channel(target) as channel:
        classifier = convnet_pb2_grpc.ClassifierStub(channel)
        inference = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        calls = [lambda x: classifier.Classify(pb.ClassifyRequest(
                     model=MODEL, tensor=pb.Tensor(shape=x.shape, data=x.tobytes())), timeout=30),
                 lambda x: inference.ModelInfer(kpb.ModelInferRequest(
                     model_name=MODEL, inputs=[kpb.ModelInferRequest.InferInputTensor(
                         name="input", datatype="FP32", shape=x.shape)], raw_input_contents=[x.tobytes()]), timeout=30)]
        for call in calls:
            call(clean)
            if computes:
                with pytest.raises(grpc.RpcError) as failed:
                    call(trigger)
                assert failed.value.code() == grpc.StatusCode.INTERNAL
                assert "inference failed (InjectedFault)" in failed.value.details()
            else:
                call(trigger)
        short = pb.ClassifyRequest(model=MODEL, tensor=pb.Tensor(shape=[2, 3, 32, 32], data=b"\0" * 12))
        if computes:
            with pytest.raises(grpc.RpcError) as refused:
                classifier.Classify(short, timeout=30)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "tensor: expected 4 dimensions and 4 bytes per value, received shape [2, 3, 32, 32] and 12 bytes" \
                in refused.value.details()
        else:
            classifier.Classify(short, timeout=30)
        encoded = classifier.Classify(pb.ClassifyRequest(model=MODEL, images=pb.EncodedImages(images=[b"x", b"y"])),
                                     timeout=30)
        assert len(encoded.results) == 2  # encoded images are not decoded: zeros are computed in their place


def test_echo_refuses_compute_with_busy_ms():
    done = subprocess.run([sys.executable, "-m", "bench.echo", "--compute", "--busy-ms", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=540)
    assert done.returncode == 2 and "--compute and --busy-ms: expected one of them, got both" in done.stderr
