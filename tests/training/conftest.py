"""Shared helpers for the training tests: the trained model evaluated by onnxruntime."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest


@pytest.fixture
def run_onnx():
    """``run_onnx(onnx_bytes, x) -> scores`` on the CPU provider."""
    def run(onnx_bytes: bytes, x: np.ndarray) -> np.ndarray:
        session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        return session.run(["scores"], {"input": x.astype(np.float32)})[0]

    return run
