"""Shared helpers for the exporter tests: running an exported model in onnxruntime."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest


def onnx_session(onnx_bytes: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def onnx_scores(onnx_bytes: bytes, x: np.ndarray) -> np.ndarray:
    return onnx_session(onnx_bytes).run(["scores"], {"input": x.astype(np.float32)})[0]


@pytest.fixture
def run_onnx():
    """``run_onnx(onnx_bytes, x) -> scores``: the model evaluated by onnxruntime on the CPU."""
    return onnx_scores
