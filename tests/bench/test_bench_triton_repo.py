"""bench/triton_repo.py: Triton's config.pbtxt, parsed by tritonclient's own ModelConfig message, says
what our config.json says; model.py's session gets the server's onnxruntime options; the repository
serves our ONNX files."""
from __future__ import annotations

import json
from pathlib import Path

import onnxruntime as ort
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from bench import triton_model
from bench.triton_repo import MODEL_PY, build_repository, config_pbtxt, session_settings
from service.config import ServerConfig
from service.repository import read_spec
from service.sessions import session_options


def model_with_batching(model_repo: Path, tmp_path: Path, **batching) -> Path:
    """cifar-tiny's config.json with these batching settings, in a model directory of its own."""
    config = json.loads((model_repo / "cifar-tiny" / "config.json").read_text())
    config["batching"].update(batching)
    model_dir = tmp_path / "cifar-tiny"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(config))
    return model_dir


def parsed(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_config_pbtxt_carries_the_model_and_its_batching(model_repo, tmp_path):
    model_dir = model_with_batching(model_repo, tmp_path, max_batch_size=16, max_queue_delay_ms=2.5,
                                    preferred_batch_sizes=[4, 8], max_queue_size=100)
    config_json = json.loads((model_dir / "config.json").read_text())
    config = parsed(config_pbtxt(read_spec(model_dir), instances=2))
    assert config.name == "cifar-tiny" and config.backend == "python" and config.max_batch_size == 16
    batcher = config.dynamic_batching
    assert batcher.max_queue_delay_microseconds == 2500 and list(batcher.preferred_batch_size) == [4, 8]
    assert batcher.default_queue_policy.max_queue_size == 100
    assert [(g.count, g.kind) for g in config.instance_group] == [(2, model_config_pb2.ModelInstanceGroup.KIND_CPU)]
    (tensor_in,), (tensor_out,) = config.input, config.output
    assert (tensor_in.name, list(tensor_in.dims)) == (config_json["input"]["name"], config_json["input"]["shape"])
    assert (tensor_out.name, list(tensor_out.dims)) == (config_json["output"]["name"], config_json["output"]["shape"])
    assert tensor_in.data_type == tensor_out.data_type == model_config_pb2.TYPE_FP32


def test_config_pbtxt_of_the_shipped_defaults(model_repo):
    config = parsed(config_pbtxt(read_spec(model_repo / "cifar-vgg")))
    shipped = json.loads((model_repo / "cifar-vgg" / "config.json").read_text())["batching"]
    assert config.max_batch_size == shipped["max_batch_size"]
    assert config.dynamic_batching.max_queue_delay_microseconds == round(shipped["max_queue_delay_ms"] * 1000)
    assert list(config.dynamic_batching.preferred_batch_size) == shipped["preferred_batch_sizes"]
    assert [g.count for g in config.instance_group] == [1]


def test_model_py_session_options_are_the_servers(model_repo):
    spec = read_spec(model_repo / "cifar-tiny")
    settings = json.loads(json.dumps(session_settings(spec, intra_op_threads=1)))  # as model.py reads it
    ours, theirs = session_options(ServerConfig(intra_op_threads=1)), triton_model.session_options(settings)
    for name in ("intra_op_num_threads", "inter_op_num_threads", "graph_optimization_level", "execution_mode"):
        assert getattr(theirs, name) == getattr(ours, name), name
    assert theirs.intra_op_num_threads == 1
    for key in ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning"):
        assert theirs.get_session_config_entry(key) == ours.get_session_config_entry(key) == "0"
    assert settings["warm_up_batches"] == [1, 8] and settings["example_shape"] == [3, 32, 32]
    assert theirs.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def test_repository_serves_our_onnx_files(model_repo, tmp_path):
    out = build_repository(model_repo, tmp_path / "triton", ["cifar-tiny", "fashion"], instances=2)
    assert sorted(p.name for p in out.iterdir()) == ["cifar-tiny", "fashion"]
    for name in ("cifar-tiny", "fashion"):
        version = out / name / "1"
        newest = max((p for p in (model_repo / name).iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        assert (version / "model.onnx").read_bytes() == (newest / "model.onnx").read_bytes()
        assert (version / "model.py").read_text() == MODEL_PY.read_text()
        assert json.loads((version / "session.json").read_text())["input"] == read_spec(model_repo / name).input_name
        assert parsed((out / name / "config.pbtxt").read_text()).instance_group[0].count == 2
