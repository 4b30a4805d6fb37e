"""Tiny model repositories built by hand with onnx.helper, so the service's loading code is tested
without the exporter: one linear classifier per version, scores = flatten(x) @ W + b."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LABELS = ["a", "b", "c"]
SHAPE = (3, 4, 4)


def linear_onnx(weights: np.ndarray, bias: np.ndarray, input_name: str = "input", output_name: str = "scores") -> bytes:
    features = int(np.prod(SHAPE))
    graph = helper.make_graph(
        [helper.make_node("Flatten", [input_name], ["flat"], axis=1),
         helper.make_node("Gemm", ["flat", "W", "b"], [output_name])],
        "linear",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", *SHAPE])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", len(bias)])],
        initializer=[numpy_helper.from_array(weights.astype(np.float32).reshape(features, -1), "W"),
                     numpy_helper.from_array(bias.astype(np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def tiny_config(model: str, **changes) -> dict:
    config = {
        "name": model, "architecture": "linear", "spec": "INPUT[4x4x3] -> FC-3",
        "input": {"name": "input", "datatype": "FP32", "shape": list(SHAPE), "layout": "NCHW"},
        "output": {"name": "scores", "datatype": "FP32", "shape": [len(LABELS)]},
        "labels": LABELS,
        "preprocessing": {"color": "rgb", "resize": [4, 4], "scale": 1 / 255, "mean": [0.5, 0.5, 0.5],
                          "std": [0.25, 0.25, 0.25]},
        "batching": {"max_batch_size": 8, "max_queue_delay_ms": 0.0, "preferred_batch_sizes": [],
                     "max_queue_size": 64, "instances": 1},
        "fully_convolutional": False,
    }
    config.update(changes)
    return config


def weights_for(version: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(version)
    return rng.standard_normal((int(np.prod(SHAPE)), len(LABELS))), rng.standard_normal(len(LABELS))


def write_model(repo: Path, name: str, versions=(1,), config: dict | None = None) -> Path:
    model_dir = repo / name
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.json").write_text(json.dumps(config or tiny_config(name)))
    for version in versions:
        (model_dir / str(version)).mkdir(exist_ok=True)
        (model_dir / str(version) / "model.onnx").write_bytes(linear_onnx(*weights_for(version)))
    return model_dir
