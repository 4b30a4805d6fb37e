"""The CPU image run alone by podman, the way Kubernetes runs it (deploy/k8s): as its non-root
user, on a read-only root filesystem with a writable /tmp. It classifies over the KServe v2 API
(tritonclient) and the own API (the project's CLI) with the scores of the NumPy reference forward
pass, answers its own HEALTHCHECK command, serves /metrics, and carries only what serving needs.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc

from container_engine import ROOT, healthy, image_size_mb, podman, unique, wait_for
from exporter.repository import check_input, load_reference, read_config

pytestmark = [pytest.mark.slow, pytest.mark.container, pytest.mark.timeout(900)]
IMAGE_LIMIT_MB = 450
# Packages of the build stage (stubs, ONNX export, training data) and of the tests and benchmarks.
NOT_FOR_SERVING = ("grpc_tools", "onnx", "sklearn", "scipy", "tqdm", "yaml", "matplotlib", "pytest",
                   "tritonclient", "threadpoolctl", "pip")


def serving_status(target: str) -> str:
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def host_port(container: str, port: int) -> int:
    return int(podman("port", container, str(port)).stdout.strip().rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def served(convnet_image):
    name = unique("convnet-image")
    podman("run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp:rw,size=64m",
           "-p", "127.0.0.1::8001", "-p", "127.0.0.1::8002", convnet_image["name"])
    try:
        target = f"127.0.0.1:{host_port(name, 8001)}"
        wait_for(lambda: serving_status(target) == "SERVING", 120, f"{name} to serve on {target}")
        yield {"name": name, "target": target, "metrics": f"http://127.0.0.1:{host_port(name, 8002)}/metrics"}
    finally:
        logs = podman("logs", name, check=False).stderr
        podman("rm", "-f", "-t", "5", name, check=False)
        print(logs[-3000:])


def requests_total(metrics_url: str, model: str, api: str) -> float:
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    pattern = rf'^convnet_requests_total\{{(?=[^}}]*model="{model}")(?=[^}}]*api="{api}")(?=[^}}]*code="OK")[^}}]*\}} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, text, re.M))


def test_runtime_image_is_small_and_carries_only_serving(convnet_image):
    size = image_size_mb(convnet_image["name"])
    assert size <= IMAGE_LIMIT_MB, f"{convnet_image['name']} is {size:.0f} MB"
    probe = "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])"
    done = podman("run", "--rm", "--entrypoint", "python", convnet_image["name"], "-c", probe, *NOT_FOR_SERVING)
    assert done.stdout.strip() == "[]"


def test_kserve_scores_equal_the_reference(served, image_models):
    model = "cifar-tiny"
    shape = read_config(image_models / model)["input"]["shape"]
    x = np.random.default_rng(7).standard_normal((4, *shape)).astype(np.float32)
    client = triton.InferenceServerClient(served["target"])
    tensor = triton.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    scores = client.infer(model, [tensor]).as_numpy("scores")
    network, params, config = load_reference(image_models / model)
    np.testing.assert_allclose(scores, network.predict(check_input(x, config), params), rtol=1e-4, atol=1e-4)


def test_own_cli_classifies_digits(served, image_models, tmp_path):
    """The project's CLI against the container: held-out digits get their labels."""
    out = tmp_path / "digits"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "write_digit_pngs.py"), "--out", str(out), "--count", "20",
                    "--model-dir", str(image_models / "digits-lenet5")], check=True, timeout=120, cwd=ROOT)
    files = sorted(out.glob("*.png"))
    done = subprocess.run([sys.executable, "-m", "service", "classify", "--target", served["target"],
                           "--model", "digits-lenet5", "--json", *map(str, files)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(answers) == len(files) == 20
    right = sum(a["top"][0]["label"] == re.search(r"label(\d)", a["image"]).group(1) for a in answers)
    assert right >= 18, answers


def test_health_check_command_answers(served, convnet_image):
    (inspected,) = json.loads(podman("image", "inspect", convnet_image["name"]).stdout)
    assert "deploy/healthcheck.py" in " ".join(inspected["Healthcheck"]["Test"])
    assert healthy(served["name"])
    done = podman("exec", served["name"], "python", "deploy/healthcheck.py", "--service", "no-such-model", check=False)
    assert done.returncode == 1 and "NOT_FOUND" in done.stderr


def test_runs_as_non_root_on_a_read_only_root(served):
    status = podman("exec", served["name"], "cat", "/proc/1/status").stdout
    uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", status, re.M).groups()
    assert uids == ("10001", "10001")
    assert "python" in podman("exec", served["name"], "cat", "/proc/1/cmdline").stdout
    denied = podman("exec", served["name"], "touch", "/models/x", check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr


def test_metrics_count_the_calls(served):
    model = "cifar-tiny"
    before = requests_total(served["metrics"], model, "kserve")
    client = triton.InferenceServerClient(served["target"])
    x = np.zeros((1, 3, 32, 32), np.float32)
    for _ in range(3):
        tensor = triton.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        client.infer(model, [tensor])
    assert requests_total(served["metrics"], model, "kserve") - before == 3
