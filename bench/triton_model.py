"""The model step of the Triton peer: a Triton Python-backend model holding one onnxruntime session.

bench/triton_repo.py copies this file as ``<model>/1/model.py`` of a Triton model repository, beside
``model.onnx`` and ``session.json`` (the project's onnxruntime session options, written from
service.sessions). Triton's dynamic batcher hands ``execute`` the requests of one batch; they are
computed as one ``session.run``, as the project's batch queue computes its batches. It runs inside
Triton's Python-backend stub (the Triton venv's interpreter), never in the project's.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort


def session_options(settings: dict) -> ort.SessionOptions:
    """onnxruntime options from session.json: threads, optimization level, execution mode, config entries."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings["intra_op_num_threads"]
    options.inter_op_num_threads = settings["inter_op_num_threads"]
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, settings["graph_optimization_level"])
    options.execution_mode = getattr(ort.ExecutionMode, settings["execution_mode"])
    for key, value in settings["config_entries"].items():
        options.add_session_config_entry(key, value)
    return options


class TritonPythonModel:
    """One onnxruntime session; each dynamic batch is one ``session.run``."""

    def initialize(self, args: dict) -> None:
        # Provided by Triton's stub process only, hence imported by name at run time.
        self.pb = importlib.import_module("triton_python_backend_utils")
        here = Path(__file__).resolve().parent
        settings = json.loads((here / "session.json").read_text())
        self.input, self.output = settings["input"], settings["output"]
        self.session = ort.InferenceSession(str(here / "model.onnx"), sess_options=session_options(settings),
                                            providers=["CPUExecutionProvider"])
        for n in settings["warm_up_batches"]:
            self.session.run([self.output], {self.input: np.zeros((n, *settings["example_shape"]), np.float32)})

    def execute(self, requests: list) -> list:
        tensors = [self.pb.get_input_tensor_by_name(r, self.input).as_numpy() for r in requests]
        batch = tensors[0] if len(tensors) == 1 else np.concatenate(tensors)
        scores = self.session.run([self.output], {self.input: batch})[0]
        replies, start = [], 0
        for x in tensors:
            replies.append(self.pb.InferenceResponse([self.pb.Tensor(self.output, scores[start:start + len(x)])]))
            start += len(x)
        return replies
