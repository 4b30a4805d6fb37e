"""torchvision's ConvNets, exported by torch and brought in with `python -m exporter import`, served
by a real server from a temporary repository: over KServe gRPC and HTTP each answers the scores the
NumPy reference computes from the imported graph.json and weights.npz (and torch computes from the
net itself). One net keeps torch's own tensor names other than input/scores, which the server serves."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tritonclient.grpc as triton
from http_helpers import infer_json, request, scores_of

from bench.torchvision_nets import ARCHITECTURES, export
from exporter.importing import TOLERANCE
from exporter.repository import reference_forward

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
"""The module's fixture exports and imports twelve nets (vgg11_bn's import alone takes minutes here)."""

NAMES = {"squeezenet1_1": ("pixels", "logits")}
"""Nets exported with other input/output names than input/scores."""


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """REPO with every architecture imported through the CLI, and each net's torch scores on its inputs."""
    root = tmp_path_factory.mktemp("imported")
    repo, torch_scores = root / "repo", {}
    for arch, size in ARCHITECTURES.items():
        input_name, output_name = NAMES.get(arch, ("input", "scores"))
        exported = export(arch, seed=0, size=size, input_name=input_name, output_name=output_name)
        source = root / f"{arch}.onnx"
        source.write_bytes(exported.onnx_bytes)
        result = subprocess.run([sys.executable, "-m", "exporter", "import", str(source), "--name", arch, "--out", str(repo)],
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0 and "NumPy and onnxruntime agree" in result.stdout, result.stderr
        x = inputs(arch)
        torch_scores[arch] = exported.torch_scores(x)
    return repo, torch_scores


@pytest.fixture(scope="module")
def served(imported, tmp_path_factory):
    from bench.launcher import launch_server

    repo, _ = imported
    server = launch_server(tmp_path_factory.mktemp("server"), models=repo, env={"CONVNET_DRAIN_S": "0"}, timeout=600)
    yield server
    server.stop()


def inputs(arch: str) -> np.ndarray:
    size = ARCHITECTURES[arch]
    return np.random.default_rng(len(arch)).standard_normal((2, 3, size, size)).astype(np.float32)


def assert_close(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    spread = float(expected.max() - expected.min())
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, expected {expected.shape}"
    assert np.abs(got - expected).max() <= TOLERANCE * spread, f"{what}: differs by {np.abs(got - expected).max():.3g}"


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_imported_net_serves_the_reference_scores_over_grpc_and_http(imported, served, arch):
    repo, torch_scores = imported
    input_name, output_name = NAMES.get(arch, ("input", "scores"))
    x = inputs(arch)
    expected = reference_forward(repo / arch, x)
    assert_close(expected, torch_scores[arch], f"{arch}: NumPy reference vs torch")

    with triton.InferenceServerClient(served.target) as client:
        tensor = triton.InferInput(input_name, list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer(arch, [tensor], outputs=[triton.InferRequestedOutput(output_name)])
        assert_close(result.as_numpy(output_name), expected, f"{arch}: KServe gRPC vs the reference")

    reply = request(served.http_port, "POST", f"/v2/models/{arch}/infer", infer_json(x, name=input_name))
    assert reply.status == 200, reply.body[:300]
    assert reply.json()["outputs"][0]["name"] == output_name
    assert_close(scores_of(reply), expected, f"{arch}: KServe HTTP vs the reference")
