"""`python -m service serve` as an operator meets it: the start-up summary, configuration errors,
ports in use, Ctrl-C, a broken model next to working ones, CUDA asked for on a CPU-only machine."""
from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from test_server_helpers import images, reply_scores, tensor

from service.generated.convnet.v1 import convnet_pb2 as pb
from service.generated.convnet.v1 import convnet_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


def serve(*args: str, timeout: float = 540) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service", "serve", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_startup_summary_lists_address_models_providers_and_batching(start_server):
    server = start_server("--max-queue-delay-ms", "0.5", "--instances", "2")
    summary = server.output()
    assert f"gRPC on 127.0.0.1:{server.port}" in summary
    assert f"http://127.0.0.1:{server.metrics_port}/metrics" in summary
    assert "CPUExecutionProvider" in summary
    for model in ("cifar-tiny", "cifar-vgg"):
        line = next(line for line in summary.splitlines() if line.startswith(model))
        assert line.split()[1:4] == ["1", "1", "yes"] and "64, 0.5 ms, -, 1024" in line and line.endswith("2")


def test_ctrl_c_stops_cleanly_with_status_0(start_server):
    server = start_server()
    assert server.stop(signal.SIGINT) == 0
    assert "SIGINT: stopping" in server.output()


def test_configuration_errors_exit_2_with_the_field_named(tmp_path):
    result = serve("--port", "70000")
    assert result.returncode == 2 and "port: expected a port in 0..65535" in result.stderr
    (tmp_path / "bad.toml").write_text("max_batch_size = 'many'\n")
    result = serve("--config", str(tmp_path / "bad.toml"))
    assert result.returncode == 2 and "bad.toml: max_batch_size: expected an integer, got 'many'" in result.stderr


def test_port_in_use_and_missing_repository_exit_1_saying_why(model_repo, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve("--models", str(model_repo), "--port", str(port), "--metrics-port", "0")
    assert result.returncode == 1 and f"cannot listen on 127.0.0.1:{port} (gRPC)" in result.stderr
    result = serve("--models", str(tmp_path / "absent"), "--port", "0", "--metrics-port", "0")
    assert result.returncode == 1 and "not a directory" in result.stderr


def test_a_broken_model_is_not_ready_with_its_reason_and_the_others_serve(start_server, model_repo, tmp_path, reference):
    repo = tmp_path / "models"
    shutil.copytree(model_repo / "cifar-tiny", repo / "cifar-tiny")
    shutil.copytree(model_repo / "cifar-tiny", repo / "broken")
    (repo / "broken" / "config.json").write_text((repo / "broken" / "config.json").read_text().replace(
        '"cifar-tiny"', '"broken"', 1))
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"\x00 corrupt")
    server = start_server(models=repo)
    stub = convnet_pb2_grpc.ClassifierStub(server.channel())
    info = stub.GetModelInfo(pb.GetModelInfoRequest(model="broken"), timeout=10)
    assert not info.ready and "onnxruntime cannot load it" in info.not_ready_reason
    assert server.health("broken") == "NOT_SERVING" and server.health("cifar-tiny") == "SERVING"
    assert server.health("") == "SERVING"
    with pytest.raises(grpc.RpcError) as err:
        stub.Classify(pb.ClassifyRequest(model="broken", tensor=tensor(images(1, 0))), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "not ready" in err.value.details()
    x = images(2, seed=5)
    reply = stub.Classify(pb.ClassifyRequest(model="cifar-tiny", tensor=tensor(x)), timeout=10)
    assert abs(reply_scores(reply) - reference("cifar-tiny", x)).max() < 1e-4
    assert "NO: version 1: " in server.output()


def test_cuda_asked_for_serves_on_cuda_or_warns_once_and_serves_on_cpu(start_server):
    import onnxruntime

    server = start_server("--providers", "cuda")
    info = convnet_pb2_grpc.ClassifierStub(server.channel()).GetModelInfo(
        pb.GetModelInfoRequest(model="cifar-tiny"), timeout=10)
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers() and "could not be used" not in server.output():
        assert list(info.execution_providers) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        assert server.output().count("providers=cuda was asked for") == 2  # the log line and the summary line
        assert list(info.execution_providers) == ["CPUExecutionProvider"]
