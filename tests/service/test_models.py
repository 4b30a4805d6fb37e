"""Loading a repository: every model and version, broken ones isolated with their reason, sessions
checked against config.json, the CUDA fallback, and the lookup the servicers use."""
from __future__ import annotations

import asyncio
import json
import logging

import numpy as np
import pytest
from tiny_models import SHAPE, linear_onnx, tiny_config, weights_for, write_model

from service.config import ServerConfig
from service.errors import ModelNotFound, ModelNotReady
from service.models import ModelRegistry
from service.repository import spec_from_config
from service.sessions import CPU, CUDA, Providers


def load(repo, **config) -> ModelRegistry:
    return ModelRegistry.load(ServerConfig(models=repo, **config))


def test_every_version_loads_and_the_newest_is_the_default(tiny_repo):
    registry = load(tiny_repo)
    model = registry.get("tiny")
    assert sorted(model.versions) == [1, 2] and model.default.version == 2 and registry.ready()
    x = np.random.default_rng(0).standard_normal((3, *SHAPE)).astype(np.float32)

    async def run(version):
        served = registry.resolve("tiny", version)
        out = await served.queue.submit(x)
        await registry.close(1)
        return served.version, out

    for asked, expected_version in [(None, 2), (0, 2), (1, 1)]:
        registry = load(tiny_repo)
        version, out = asyncio.run(run(asked))
        w, b = weights_for(expected_version)
        assert version == expected_version
        np.testing.assert_allclose(out.raw, x.reshape(3, -1) @ w + b, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(out.scores, out.raw)


def test_unknown_model_and_version_are_not_found_naming_what_exists(tiny_repo):
    registry = load(tiny_repo)
    with pytest.raises(ModelNotFound, match=r"no model named 'nope'; available: tiny"):
        registry.resolve("nope")
    with pytest.raises(ModelNotFound, match=r"no version 3; available: 1, 2"):
        registry.resolve("tiny", 3)


def test_broken_models_and_versions_are_isolated_with_their_reason(tiny_repo):
    (tiny_repo / "tiny" / "3").mkdir()
    (tiny_repo / "tiny" / "3" / "model.onnx").write_bytes(b"this is not onnx")
    write_model(tiny_repo, "renamed-io")
    w, b = weights_for(1)
    (tiny_repo / "renamed-io" / "1" / "model.onnx").write_bytes(linear_onnx(w, b, input_name="pixels"))
    write_model(tiny_repo, "bad-config", config=tiny_config("bad-config", labels=["only-one"]))
    (tiny_repo / "no-config").mkdir()
    write_model(tiny_repo, "no-versions", versions=())

    registry = load(tiny_repo)
    tiny = registry.get("tiny")
    assert tiny.ready and tiny.default.version == 2  # a broken newest version never shadows a working one
    assert not tiny.versions[3].ready and "onnxruntime cannot load it" in tiny.versions[3].reason
    with pytest.raises(ModelNotReady, match="version 3 is not ready: .*cannot load"):
        registry.resolve("tiny", 3)
    reasons = {name: registry.get(name).not_ready_reason for name in ("renamed-io", "bad-config", "no-config", "no-versions")}
    assert "inputs ['pixels'], but config.json names 'input'" in reasons["renamed-io"]
    assert "labels: expected 3 strings" in reasons["bad-config"]
    assert "config.json not found" in reasons["no-config"]
    assert "no versions" in reasons["no-versions"]
    with pytest.raises(ModelNotReady, match="'bad-config' is not ready: .*labels"):
        registry.resolve("bad-config")
    assert not registry.ready()


def test_batching_comes_from_config_json_then_server_configuration(tiny_repo):
    registry = ModelRegistry.load(ServerConfig(models=tiny_repo, instances=2, max_queue_delay_ms=1.5))
    batching = registry.resolve("tiny").batching
    assert (batching.max_batch_size, batching.max_queue_size, batching.instances, batching.max_queue_delay_ms) == (8, 64, 2, 1.5)


def test_cuda_without_a_cuda_provider_warns_once_and_serves_on_cpu(tiny_repo, caplog):
    with caplog.at_level(logging.WARNING):
        providers = Providers.resolve("cuda", available=[CPU])
        providers.fallback("a second reason")
    assert providers.names == [CPU]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "providers=cuda" in warnings[0].getMessage() and "serving on the CPU" in warnings[0].getMessage()
    assert Providers.resolve("cuda", available=[CUDA, CPU]).names == [CUDA, CPU]
    assert Providers.resolve("cpu", available=[CUDA, CPU]).names == [CPU]


@pytest.mark.parametrize("change, message", [
    ({"input": {"name": "input", "datatype": "FP16", "shape": [3, 4, 4]}}, "input.datatype: expected 'FP32'"),
    ({"input": {"name": "input", "datatype": "FP32", "shape": [3, 4]}}, "input.shape: expected a list of 3"),
    ({"preprocessing": {"color": "cmyk", "resize": [4, 4], "scale": 1, "mean": [0], "std": [1]}},
     "preprocessing.color: expected 'rgb' or 'gray'"),
    ({"preprocessing": {"color": "gray", "resize": [4, 4], "scale": 1, "mean": [0], "std": [1]}},
     "input.shape\\[0\\]: expected 1 channels"),
    ({"batching": {"max_batch_size": 0}}, "batching.max_batch_size: expected an integer >= 1"),
    ({"batching": {"max_batch_sizes": 4}}, "batching: .*max_batch_sizes"),
    ({"name": "other"}, "name: expected the directory name 'tiny'"),
])
def test_config_json_errors_name_the_field(change, message):
    with pytest.raises(ValueError, match=message):
        spec_from_config(tiny_config("tiny", **change), "tiny")


def test_missing_repository_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        load(tmp_path / "nothing-here")


def test_config_json_written_by_the_exporter_is_accepted(model_repo):
    for name in ("cifar-tiny", "cifar-vgg"):
        spec = spec_from_config(json.loads((model_repo / name / "config.json").read_text()), name)
        assert spec.input_shape == (3, 32, 32) and spec.classes == 10
