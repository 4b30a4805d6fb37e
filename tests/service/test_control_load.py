"""Model control's Load reads the model's config.json and version set again and checks them as
start-up does (service/reload.py ``Reloader.load``): a config.json that is not JSON, a field out
of range or a config.json that disagrees with the ONNX file fails the load with the file, field,
expected and received value, and the version that served before still serves; a load after an
unload, or after config.json changed, serves the new configuration."""
from __future__ import annotations

import asyncio
import json
import re

import numpy as np
import pytest
from test_control import expected, inputs
from tiny_models import linear_onnx, tiny_config, weights_for

from service.config import ServerConfig
from service.control import ModelControl
from service.errors import InvalidInput, LoadFailed
from service.metrics import Metrics
from service.models import ModelRegistry
from service.reload import Reloader


def control_for(repo):
    config = ServerConfig(models=repo, shutdown_grace_s=10)
    metrics = Metrics()
    registry = ModelRegistry.load(config, metrics)
    return ModelControl(Reloader(registry, config, metrics), "explicit"), registry, metrics


def ready_gauge(metrics: Metrics, version: int) -> float:
    return metrics.registry.get_sample_value("convnet_model_ready", {"model": "tiny", "version": str(version)})


def write_config(repo, **changes) -> None:
    (repo / "tiny" / "config.json").write_text(json.dumps(tiny_config("tiny", **changes)))


def not_json(repo) -> str:
    (repo / "tiny" / "config.json").write_text('{"name": "tiny",')
    return re.escape(f"{repo / 'tiny' / 'config.json'}: not valid JSON")


def out_of_range(repo) -> str:
    write_config(repo, input={"name": "input", "datatype": "FP32", "shape": [3, 4, 0]})
    return re.escape(f"{repo / 'tiny' / 'config.json'}: input.shape: expected a list of 3 positive integers "
                     "(-1 = variable), got [3, 4, 0]")


def input_disagrees_with_onnx(repo) -> str:
    write_config(repo, input={"name": "input", "datatype": "FP32", "shape": [3, 5, 5]})
    return (re.escape(f"version 1: {repo / 'tiny' / '1' / 'model.onnx'}: input shape ['N', 3, 4, 4], "
                      "but config.json says [N, 3, 5, 5]"))


def output_disagrees_with_onnx(repo) -> str:
    write_config(repo, output={"name": "scores", "datatype": "FP32", "shape": [4]}, labels=["a", "b", "c", "d"])
    return re.escape("gave scores (1, 3), expected (1, 4, ...)")


def corrupt_new_version(repo) -> str:
    (repo / "tiny" / "3").mkdir()
    (repo / "tiny" / "3" / "model.onnx").write_bytes(b"not onnx")
    return re.escape("not loaded (still serving version 2): version 3: ") + ".*onnxruntime cannot load it"


@pytest.mark.parametrize("break_it", [not_json, out_of_range, input_disagrees_with_onnx, output_disagrees_with_onnx,
                                      corrupt_new_version])
def test_a_load_that_fails_names_the_fault_and_leaves_the_serving_version_untouched(tiny_repo, break_it):
    async def main():
        control, registry, metrics = control_for(tiny_repo)
        model, served = registry.models["tiny"], registry.resolve("tiny")
        message = break_it(tiny_repo)
        with pytest.raises(LoadFailed, match=message):
            await control.load("tiny")
        assert registry.models["tiny"] is model and registry.resolve("tiny") is served
        assert sorted(model.versions) == [1, 2] and all(v.ready for v in model.versions.values())
        assert [ready_gauge(metrics, v) for v in (1, 2)] == [1, 1]
        assert [e.state for e in control.index()] == ["READY", "READY"]
        x = inputs(2, 7)
        out = await served.queue.submit(x)
        await registry.close(1)
        return x, out

    x, out = asyncio.run(main())
    np.testing.assert_allclose(out.raw, expected(x, 2), rtol=1e-5, atol=1e-5)


def test_unload_then_load_serves_the_config_json_as_it_is_now(tiny_repo):
    async def main():
        control, registry, _ = control_for(tiny_repo)
        await control.unload("tiny")
        batching = {**tiny_config("tiny")["batching"], "max_batch_size": 4}
        write_config(tiny_repo, labels=["x", "y", "z"], batching=batching)
        changes = await control.load("tiny")
        served = registry.resolve("tiny")
        out = await served.queue.submit(inputs(3, 8))
        await registry.close(1)
        return changes, registry.models["tiny"].spec.labels, served.batching.max_batch_size, out

    changes, labels, max_batch, out = asyncio.run(main())
    assert changes == ["model tiny: config.json changed, versions [1, 2] loaded; default version - -> 2"]
    assert labels == ("x", "y", "z") and max_batch == 4
    np.testing.assert_allclose(out.raw, expected(inputs(3, 8), 2), rtol=1e-5, atol=1e-5)


def test_a_load_after_config_json_changed_swaps_the_model_whole_and_the_old_queue_drains(tiny_repo):
    async def main():
        control, registry, metrics = control_for(tiny_repo)
        old = registry.resolve("tiny")
        write_config(tiny_repo, labels=["x", "y", "z"])
        changes = await control.load("tiny")
        new = registry.resolve("tiny")
        await asyncio.wait_for(control.reloader.stop(), 10)  # the replaced queues' drains
        out = await new.queue.submit(inputs(1, 9))
        gauges = [ready_gauge(metrics, v) for v in (1, 2)]
        await registry.close(1)
        return old, new, changes, registry.models["tiny"].spec.labels, gauges, out

    old, new, changes, labels, gauges, out = asyncio.run(main())
    assert new is not old and old.queue.closed and labels == ("x", "y", "z") and gauges == [1, 1]
    assert changes == ["model tiny: config.json changed, versions [1, 2] loaded; default version 2 -> 2",
                       "model tiny version 1: replaced, the old sessions unloaded after their queue drains",
                       "model tiny version 2: replaced, the old sessions unloaded after their queue drains"]
    np.testing.assert_allclose(out.raw, expected(inputs(1, 9), 2), rtol=1e-5, atol=1e-5)


def test_a_load_with_nothing_changed_keeps_the_sessions(tiny_repo):
    async def main():
        control, registry, _ = control_for(tiny_repo)
        before = dict(registry.models["tiny"].versions)
        changes = await control.load("tiny")
        after = dict(registry.models["tiny"].versions)
        await registry.close(1)
        return changes, before, after

    changes, before, after = asyncio.run(main())
    assert changes == [] and all(after[v] is before[v] for v in (1, 2))


def test_a_version_gone_from_the_directory_is_withdrawn_by_the_load(tiny_repo):
    async def main():
        control, registry, _ = control_for(tiny_repo)
        (tiny_repo / "tiny" / "3").mkdir()
        (tiny_repo / "tiny" / "3" / "model.onnx").write_bytes(linear_onnx(*weights_for(3)))
        (tiny_repo / "tiny" / "1" / "model.onnx").unlink()
        changes = await control.load("tiny")
        versions = sorted(registry.models["tiny"].versions)
        await registry.close(1)
        return changes, versions

    changes, versions = asyncio.run(main())
    assert versions == [2, 3]
    assert changes[0] == "model tiny: versions [3] loaded; default version 2 -> 3"
    assert changes[1].startswith("model tiny version 1: removed from the repository")


def test_config_overrides_are_refused_naming_the_parameter(tiny_repo):
    async def main():
        control, registry, _ = control_for(tiny_repo)
        with pytest.raises(InvalidInput, match=r"parameters: expected none .*received \['config'\]"):
            await control.load("tiny", parameters={"config": "{}"})
        await registry.close(1)

    asyncio.run(main())
