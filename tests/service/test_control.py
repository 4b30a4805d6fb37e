"""Explicit model control (service/control.py) on the hand-built linear models, in process:
unload lets queued work finish and refuses new work; load brings a model or a new version back
from the repository directory, reading config.json again; load and unload are refused while model
control is off, the index is not."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest
from tiny_models import SHAPE, linear_onnx, weights_for, write_model

from service.config import ServerConfig
from service.control import ModelControl
from service.errors import ControlDisabled, ModelNotFound, ModelNotReady, ShuttingDown
from service.models import ModelRegistry
from service.reload import Reloader

SLOW = 777.0


def inputs(n: int, seed: int, marker: float | None = None) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, *SHAPE)).astype(np.float32)
    if marker is not None:
        x[0, 0, 0, 0] = marker
    return x


def expected(x: np.ndarray, version: int) -> np.ndarray:
    w, b = weights_for(version)
    return x.reshape(len(x), -1) @ w + b


def control_for(repo, mode="explicit"):
    config = ServerConfig(models=repo, shutdown_grace_s=10)
    registry = ModelRegistry.load(config)
    return ModelControl(Reloader(registry, config), mode), registry


def test_off_refuses_load_and_unload_naming_the_setting_and_answers_the_index(tiny_repo):
    async def main():
        control, registry = control_for(tiny_repo, "none")
        for call in (control.load("tiny"), control.unload("tiny")):
            with pytest.raises(ControlDisabled, match="model_control = none.*--model-control explicit"):
                await call
        assert [(e.name, e.version, e.state, e.reason) for e in control.index()] == [
            ("tiny", str(v), "READY", "") for v in sorted(registry.models["tiny"].versions)]
        assert registry.resolve("tiny").ready
        await registry.close(1)
    asyncio.run(main())


def test_unload_finishes_queued_work_then_refuses_and_load_brings_it_back(tiny_repo, monkeypatch):
    monkeypatch.setenv("CONVNET_INJECT_SLOW", f"{SLOW}:0.3")

    async def main():
        control, registry = control_for(tiny_repo)
        served = registry.resolve("tiny")
        slow, queued = inputs(1, 1, SLOW), inputs(2, 2)
        first = asyncio.ensure_future(served.queue.submit(slow))
        await asyncio.sleep(0)  # lets submit() run: the free instance's thread takes the slow batch
        while served.queue.queued_images:
            await asyncio.sleep(0.001)
        second = asyncio.ensure_future(served.queue.submit(queued))
        await asyncio.sleep(0)
        assert served.queue.queued_images == 2  # the other waits behind it
        unloading = asyncio.ensure_future(control.unload("tiny"))
        while not served.queue.closed:
            await asyncio.sleep(0)
        with pytest.raises(ModelNotReady, match="unloaded"):
            registry.resolve("tiny")
        with pytest.raises(ShuttingDown, match="tiny:2: it is being unloaded and accepts no new requests"):
            await served.queue.submit(inputs(1, 3))
        await unloading
        done = await asyncio.gather(first, second)
        index = {(e.name, e.version): e.state for e in control.index()}
        assert index == {("tiny", "1"): "UNAVAILABLE", ("tiny", "2"): "UNAVAILABLE"}
        assert await control.reloader.scan() == []  # a rescan leaves an unloaded model alone
        changes = await control.load("tiny")
        back = await registry.resolve("tiny").queue.submit(inputs(2, 4))
        assert [e.state for e in control.index(ready_only=True)] == ["READY", "READY"]
        await registry.close(1)
        return done, changes, back

    (slow_out, queued_out), changes, back = asyncio.run(main())
    np.testing.assert_allclose(queued_out.raw, expected(inputs(2, 2), 2), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(back.raw, expected(inputs(2, 4), 2), rtol=1e-5, atol=1e-5)
    assert changes == ["model tiny: versions [1, 2] loaded; default version - -> 2"]


def test_load_picks_up_a_new_model_and_a_new_version(tiny_repo):
    async def main():
        control, registry = control_for(tiny_repo)
        write_model(tiny_repo, "other", versions=(1,))
        assert ("other", "", "UNAVAILABLE") in {(e.name, e.version, e.state) for e in control.index()}
        assert await control.load("other") == ["model other: versions [1] loaded; default version - -> 1"]
        (tiny_repo / "tiny" / "3").mkdir()
        (tiny_repo / "tiny" / "3" / "model.onnx").write_bytes(linear_onnx(*weights_for(3)))
        assert await control.load("tiny") == ["model tiny: versions [3] loaded; default version 2 -> 3"]
        out = await registry.resolve("tiny").queue.submit(inputs(1, 5))
        with pytest.raises(ModelNotFound, match="no model 'ghost'"):
            await control.load("ghost")
        with pytest.raises(ModelNotFound, match="repository_name"):
            await control.load("tiny", repository="elsewhere")
        await registry.close(1)
        return out

    np.testing.assert_allclose(asyncio.run(main()).raw, expected(inputs(1, 5), 3), rtol=1e-5, atol=1e-5)
