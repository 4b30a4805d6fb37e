"""The benchmark peers: the real Triton (bench/triton.py) serves our cifar-tiny with scores equal bit
for bit to ours and to in-process onnxruntime, counts its answers in its metrics and leaves no
shared memory behind; the bare synchronous echo answers ModelInfer with a reply of the real shape.

The Triton test prepares Triton's venv on first use (pip from the package registry, about a
minute; cached under ~/.cache/convnet-bench/triton afterwards).
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient

from bench.launcher import launch
from bench.triton import SHM, TritonServer, prepare
from bench.triton_repo import build_repository, newest_onnx
from service.config import ServerConfig
from service.sessions import session_options


def infer(target: str, model: str, x: np.ndarray) -> np.ndarray:
    tensor = grpcclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    with grpcclient.InferenceServerClient(target) as client:
        return client.infer(model, [tensor]).as_numpy("scores")


@pytest.mark.slow
def test_triton_scores_equal_ours_bit_for_bit(model_repo, start_server, tmp_path):
    install = prepare()
    repo = build_repository(model_repo, tmp_path / "triton-models", ["cifar-tiny"])
    ours = start_server("--intra-op-threads", "1", "--instances", "1")
    triton = TritonServer.start(install, repo, tmp_path / "triton")
    try:
        x = np.random.default_rng(23).standard_normal((4, 3, 32, 32)).astype(np.float32)
        theirs, served = infer(triton.target, "cifar-tiny", x), infer(ours.target, "cifar-tiny", x)
        session = ort.InferenceSession(str(newest_onnx(model_repo / "cifar-tiny")),
                                       sess_options=session_options(ServerConfig(intra_op_threads=1)),
                                       providers=["CPUExecutionProvider"])
        in_process = session.run(["scores"], {"input": x})[0]
        assert theirs.dtype == served.dtype == np.float32 and theirs.shape == (4, 10)
        assert theirs.tobytes() == served.tobytes() == in_process.tobytes()
        single = infer(triton.target, "cifar-tiny", x[:1])
        assert single.tobytes() == session.run(["scores"], {"input": x[:1]})[0].tobytes()
        assert triton.ok_requests("cifar-tiny") == 2 and triton.failed_requests("cifar-tiny") == 0
    finally:
        code = triton.stop()
    assert code is not None and triton.process.poll() is not None
    assert not list(SHM.glob(f"{triton.shm_prefix}*"))


def test_sync_echo_answers_model_infer_with_the_real_reply_shape(model_repo, tmp_path):
    echo = launch([sys.executable, "-m", "bench.echo_sync", "--models", str(model_repo), "--port", "0"], tmp_path,
                  "echo-sync", timeout=60)
    try:
        scores = infer(echo.target, "cifar-tiny", np.zeros((3, 3, 32, 32), np.float32))
        assert scores.shape == (3, 10) and scores.dtype == np.float32
        with pytest.raises(Exception, match="no model 'nope'"):
            infer(echo.target, "nope", np.zeros((1, 3, 32, 32), np.float32))
    finally:
        assert echo.stop() == 0


def test_sync_echo_refuses_zero_threads():
    done = subprocess.run([sys.executable, "-m", "bench.echo_sync", "--threads", "0"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "--threads: expected an integer >= 1, got 0" in done.stderr
