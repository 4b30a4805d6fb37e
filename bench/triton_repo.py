"""A Triton model repository made from the project's: the same ONNX files, Triton's dynamic batcher
configured from each config.json, and a Python-backend model.py holding one onnxruntime session
with the project's session options (bench/triton_model.py).

    build_repository(models, out, names, intra_op_threads=1, instances=1) -> out   one Triton model per name
    config_pbtxt(spec, instances=1)                          -> str   Triton's config for one model
    session_settings(spec, intra_op_threads)                 -> dict  what model.py's session uses

The onnxruntime backend ships only in NVIDIA's container, so the Python backend is the strongest
Triton model step this machine has (see ../shared/triton.md).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from exporter.repository import list_versions
from service.config import ServerConfig
from service.repository import ModelSpec, read_spec
from service.sessions import WARM_UP_BATCH, session_options

MODEL_PY = Path(__file__).resolve().parent / "triton_model.py"
SESSION_CONFIG_KEYS = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")
"""The session config entries service.sessions.session_options sets, read back from its options."""


def dims(shape) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def config_pbtxt(spec: ModelSpec, instances: int = 1) -> str:
    """Triton's config.pbtxt for ``spec``: the Python backend, the model's max_batch_size, its queue
    delay, preferred sizes and queue bound as Triton's dynamic batcher settings, ``instances`` CPU
    instances, and the input and output tensors of config.json (FP32, batch dimension implicit)."""
    b = spec.batching
    batcher = [f"  max_queue_delay_microseconds: {round(b.max_queue_delay_ms * 1000)}"]
    if b.preferred_batch_sizes:
        batcher.append(f"  preferred_batch_size: {dims(b.preferred_batch_sizes)}")
    batcher.append(f"  default_queue_policy {{ max_queue_size: {b.max_queue_size} }}")
    return "\n".join([
        f'name: "{spec.name}"',
        'backend: "python"',
        f"max_batch_size: {b.max_batch_size}",
        "dynamic_batching {", *batcher, "}",
        f"instance_group [{{ count: {instances}, kind: KIND_CPU }}]",
        f'input [{{ name: "{spec.input_name}", data_type: TYPE_FP32, dims: {dims(spec.input_shape)} }}]',
        f'output [{{ name: "{spec.output_name}", data_type: TYPE_FP32, dims: {dims(spec.output_shape)} }}]',
        "",
    ])


def session_settings(spec: ModelSpec, intra_op_threads: int = 1) -> dict:
    """The server's onnxruntime options for ``intra_op_threads`` threads, read back from the
    ``SessionOptions`` that service.sessions makes, and its warm-up batches, for model.py."""
    options = session_options(ServerConfig(intra_op_threads=intra_op_threads))
    return {
        "input": spec.input_name, "output": spec.output_name, "example_shape": list(spec.example_shape()),
        "intra_op_num_threads": options.intra_op_num_threads,
        "inter_op_num_threads": options.inter_op_num_threads,
        "graph_optimization_level": options.graph_optimization_level.name,
        "execution_mode": options.execution_mode.name,
        "config_entries": {k: options.get_session_config_entry(k) for k in SESSION_CONFIG_KEYS},
        "warm_up_batches": sorted({1, min(WARM_UP_BATCH, spec.batching.max_batch_size)}),
    }


def newest_onnx(model_dir: Path) -> Path:
    return model_dir / str(list_versions(model_dir)[-1]) / "model.onnx"


def build_repository(models: Path, out: Path, names: list[str], intra_op_threads: int = 1,
                     instances: int = 1) -> Path:
    """A Triton repository in ``out`` (replaced) serving the newest version of each named model of
    ``models`` as its version 1, with ``instances`` instances each."""
    shutil.rmtree(out, ignore_errors=True)
    for name in names:
        spec = read_spec(models / name)
        version = out / name / "1"
        version.mkdir(parents=True)
        (out / name / "config.pbtxt").write_text(config_pbtxt(spec, instances))
        (version / "session.json").write_text(json.dumps(session_settings(spec, intra_op_threads), indent=2) + "\n")
        shutil.copyfile(MODEL_PY, version / "model.py")
        (version / "model.onnx").symlink_to(newest_onnx(models / name).resolve())
    return out
