"""onnxruntime sessions: execution providers, threads, optimization level, warm-up, instances.

``cuda`` asks for ["CUDAExecutionProvider", "CPUExecutionProvider"]; when onnxruntime has no CUDA
provider, or has one but no usable GPU, the server logs ONE warning and serves on the CPU.
Each instance is its own session (own thread pool, own CUDA stream), so instances run batches
concurrently; ``session.run`` releases the GIL.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .config import ServerConfig
from .repository import ModelSpec
from .scores import Scored, score
from .settings import OPTIMIZATION_LEVELS

log = logging.getLogger(__name__)

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
OPTIMIZATION = dict(zip(OPTIMIZATION_LEVELS, (
    ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, ort.GraphOptimizationLevel.ORT_ENABLE_ALL), strict=True))
"""service.settings.OPTIMIZATION_LEVELS, in order, as onnxruntime's levels."""


@dataclass
class Providers:
    """The execution providers to ask for; falls back to CPU (warning once) when CUDA is unusable."""

    requested: str
    names: list[str] = field(default_factory=list)
    warning: str | None = None

    @classmethod
    def resolve(cls, requested: str, available: list[str] | None = None) -> "Providers":
        available = ort.get_available_providers() if available is None else available
        if requested == "cuda":
            if CUDA in available:
                return cls(requested, [CUDA, CPU])
            return cls(requested, [CPU]).fallback(
                f"providers=cuda was asked for, but this onnxruntime has no {CUDA} "
                f"(available: {', '.join(available)}; install onnxruntime-gpu); serving on the CPU")
        return cls(requested, [CPU])

    def fallback(self, message: str) -> "Providers":
        self.names = [CPU]
        if self.warning is None:
            self.warning = message
            log.warning(message)
        return self

    def check(self, session: ort.InferenceSession) -> None:
        """After creating a session: if CUDA was asked for but not taken (no GPU), fall back."""
        if CUDA in self.names and CUDA not in session.get_providers():
            self.fallback(f"providers=cuda was asked for and {CUDA} is installed, but it could not be used "
                          "(no usable GPU or CUDA libraries); serving on the CPU")


def session_options(config: ServerConfig) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = config.intra_op_threads
    options.inter_op_num_threads = config.inter_op_threads
    options.graph_optimization_level = OPTIMIZATION[config.graph_optimization_level]
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Spinning worker threads would compete with the event loop and the other instances for cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


class SessionLoadError(RuntimeError):
    """A model version cannot serve: unreadable ONNX, or inputs/outputs that disagree with config.json."""


def create_session(path: Path, spec: ModelSpec, options: ort.SessionOptions, providers: Providers) -> ort.InferenceSession:
    """One checked session: its input and output names and per-image shapes match config.json."""
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers.names)
    except Exception as exc:  # onnxruntime raises its own exception types for a corrupt file
        raise SessionLoadError(f"{path}: onnxruntime cannot load it: {str(exc).strip().splitlines()[0]}") from exc
    providers.check(session)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [i.name for i in inputs] != [spec.input_name]:
        raise SessionLoadError(f"{path}: inputs {[i.name for i in inputs]}, but config.json names {spec.input_name!r}")
    if spec.output_name not in [o.name for o in outputs]:
        raise SessionLoadError(f"{path}: outputs {[o.name for o in outputs]}, but config.json names {spec.output_name!r}")
    declared = inputs[0].shape[1:]
    for got, want in zip(declared, spec.input_shape):
        if isinstance(got, int) and want != -1 and got != want:
            raise SessionLoadError(f"{path}: input shape {inputs[0].shape}, but config.json says "
                                   f"[N, {', '.join(map(str, spec.input_shape))}]")
    return session


def warm_up(session: ort.InferenceSession, spec: ModelSpec, batch_sizes: tuple[int, ...]) -> None:
    """Run zeros through the session (first-run allocations), checking the output shape."""
    for n in batch_sizes:
        x = np.zeros((n, *spec.example_shape()), dtype=np.float32)
        (scores,) = session.run([spec.output_name], {spec.input_name: x})
        if scores.shape[0] != n or scores.shape[1] != spec.classes:
            raise SessionLoadError(f"warm-up with input {x.shape} gave scores {scores.shape}, "
                                   f"expected ({n}, {spec.classes}, ...)")


WARM_UP_BATCH = 8
"""Warm-up runs one image and a batch of min(8, max_batch_size): enough for first-run allocations
without making a large model's start-up compute a whole maximal batch."""


def load_instances(path: Path, spec: ModelSpec, count: int, options: ort.SessionOptions,
                   providers: Providers, max_batch_size: int) -> list[ort.InferenceSession]:
    """``count`` warmed-up sessions of one model version."""
    sessions = []
    for _ in range(count):
        session = create_session(path, spec, options, providers)
        warm_up(session, spec, tuple(sorted({1, min(WARM_UP_BATCH, max_batch_size)})))
        sessions.append(session)
    return sessions


def make_compute(sessions: list[ort.InferenceSession], spec: ModelSpec):
    """The batch queue's compute(instance, batch) -> Scored over these sessions."""
    output, input_name = [spec.output_name], spec.input_name

    def compute(instance: int, batch: np.ndarray) -> Scored:
        return score(sessions[instance].run(output, {input_name: batch})[0])

    return compute
