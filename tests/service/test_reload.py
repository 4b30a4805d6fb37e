"""Repository reload (service/reload.py) on the hand-built linear models: a new version takes over
while work queued on the old one finishes there; a broken new version never replaces a working
one and is retried once fixed; removed versions drain; new models appear."""
from __future__ import annotations

import asyncio
import shutil

import numpy as np
import pytest
from batching_fakes import until
from tiny_models import SHAPE, linear_onnx, weights_for, write_model

from service.config import ServerConfig
from service.errors import ModelNotFound
from service.models import ModelRegistry
from service.reload import Reloader

SLOW = 777.0


def expected(x: np.ndarray, version: int) -> np.ndarray:
    w, b = weights_for(version)
    return x.reshape(len(x), -1) @ w + b


def inputs(n: int, seed: int, marker: float | None = None) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, *SHAPE)).astype(np.float32)
    if marker is not None:
        x[0, 0, 0, 0] = marker
    return x


def add_version(repo, version: int, data: bytes | None = None) -> None:
    (repo / "tiny" / str(version)).mkdir()
    (repo / "tiny" / str(version) / "model.onnx").write_bytes(data if data is not None else linear_onnx(*weights_for(version)))


@pytest.fixture
def repo(tmp_path):
    repo = tmp_path / "models"
    write_model(repo, "tiny", versions=(1,))
    return repo


def run(coro):
    return asyncio.run(coro)


def computing(queue) -> asyncio.Future:
    """A future set once ``queue`` starts computing a batch (its compute is wrapped to tell)."""
    loop = asyncio.get_running_loop()
    started = loop.create_future()
    compute = queue.compute

    def telling(instance, batch):
        loop.call_soon_threadsafe(lambda: started.done() or started.set_result(None))
        return compute(instance, batch)

    queue.compute = telling
    return started


def test_a_new_version_takes_over_while_queued_work_finishes_on_the_old_one(repo, monkeypatch):
    monkeypatch.setenv("CONVNET_INJECT_SLOW", f"{SLOW}:0.4")
    config = ServerConfig(models=repo)

    async def main():
        registry = ModelRegistry.load(config)
        reloader = Reloader(registry, config)
        old = registry.resolve("tiny")
        slow, queued = inputs(1, 1, SLOW), inputs(2, 2)
        started = computing(old.queue)
        in_flight = [asyncio.ensure_future(old.queue.submit(slow))]
        await started
        in_flight.append(asyncio.ensure_future(old.queue.submit(queued)))
        await until(lambda: old.queue.queued_images == 2)  # the slow batch computes, the other waits behind it
        add_version(repo, 2)
        changes = await reloader.scan()
        new = registry.resolve("tiny")
        fresh = inputs(3, 3)
        after = await new.queue.submit(fresh)
        before = await asyncio.gather(*in_flight)
        assert not old.queue.closed  # still addressable as version 1
        await registry.close(1)
        return changes, old.version, new.version, before, (fresh, after)

    changes, old, new, (slow_out, queued_out), (fresh, after) = run(main())
    assert (old, new) == (1, 2)
    assert changes == ["model tiny version 2: loaded; default version 1 -> 2"]
    np.testing.assert_allclose(queued_out.raw, expected(inputs(2, 2), 1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(slow_out.raw, expected(inputs(1, 1, SLOW), 1), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(after.raw, expected(fresh, 2), rtol=1e-5, atol=1e-5)


def test_a_broken_new_version_never_replaces_a_working_one_and_is_retried_once_fixed(repo):
    config = ServerConfig(models=repo)

    async def main():
        registry = ModelRegistry.load(config)
        reloader = Reloader(registry, config)
        add_version(repo, 2, b"half-written onnx")
        first = await reloader.scan()
        model = registry.get("tiny")
        state = (model.default.version, model.versions[2].ready, model.versions[2].reason)
        again = await reloader.scan()  # unchanged file: not retried
        (repo / "tiny" / "2" / "model.onnx").write_bytes(linear_onnx(*weights_for(2)))
        fixed = await reloader.scan()
        served = registry.resolve("tiny")
        out = await served.queue.submit(inputs(1, 5))
        await registry.close(1)
        return first, state, again, fixed, served.version, out

    first, (default, ready, reason), again, fixed, default_after, out = run(main())
    assert default == 1 and not ready and "onnxruntime cannot load it" in reason
    assert len(first) == 1 and "version 2: NOT loaded, still serving version 1" in first[0] and "cannot load" in first[0]
    assert again == []
    assert fixed == ["model tiny version 2: loaded; default version 1 -> 2"] and default_after == 2
    np.testing.assert_allclose(out.raw, expected(inputs(1, 5), 2), rtol=1e-5, atol=1e-5)


def test_a_removed_version_is_withdrawn_after_its_queue_drains(repo, monkeypatch):
    monkeypatch.setenv("CONVNET_INJECT_SLOW", f"{SLOW}:0.3")
    add_version(repo, 2)
    config = ServerConfig(models=repo, shutdown_grace_s=5)

    async def main():
        registry = ModelRegistry.load(config)
        reloader = Reloader(registry, config)
        v2 = registry.resolve("tiny")
        started = computing(v2.queue)
        pending = asyncio.ensure_future(v2.queue.submit(inputs(1, 6, SLOW)))
        await started
        shutil.rmtree(repo / "tiny" / "2")
        changes = await reloader.scan()
        with pytest.raises(ModelNotFound):
            registry.resolve("tiny", 2)
        default = registry.resolve("tiny").version
        out = await pending  # finished on version 2 though it left the repository
        await reloader.stop()
        closed = v2.queue.closed
        await registry.close(1)
        return changes, default, out, closed

    changes, default, out, closed = run(main())
    assert changes == ["model tiny version 2: removed from the repository, unloaded after its queue drains"]
    assert default == 1 and closed
    np.testing.assert_allclose(out.raw, expected(inputs(1, 6, SLOW), 2), rtol=1e-4, atol=1e-3)


def test_new_models_are_added_and_health_is_told(repo):
    config = ServerConfig(models=repo)
    told = []

    async def main():
        registry = ModelRegistry.load(config)

        async def on_change():
            told.append(sorted(m for m in registry.models if registry.models[m].ready))

        reloader = Reloader(registry, config, on_change=on_change)
        write_model(repo, "other", versions=(3,))
        changes = await reloader.scan()
        nothing = await reloader.scan()
        out = await registry.resolve("other").queue.submit(inputs(1, 7))
        await registry.close(1)
        return changes, nothing, out

    changes, nothing, out = run(main())
    assert changes == ["model other: added, versions [3], ready"] and nothing == []
    assert told == [["other", "tiny"]]
    np.testing.assert_allclose(out.raw, expected(inputs(1, 7), 3), rtol=1e-5, atol=1e-5)


def test_polling_picks_up_a_new_version_by_itself(repo):
    config = ServerConfig(models=repo, reload_interval_s=0.05)

    async def main():
        registry = ModelRegistry.load(config)
        took_over = asyncio.Event()

        async def on_change():
            if registry.get("tiny").default.version == 4:
                took_over.set()

        reloader = Reloader(registry, config, on_change=on_change)
        reloader.start(config.reload_interval_s)
        add_version(repo, 4)
        await asyncio.wait_for(took_over.wait(), 10)
        await reloader.stop()
        version = registry.get("tiny").default.version
        await registry.close(1)
        return version

    assert run(main()) == 4


def test_a_model_whose_config_was_in_error_loads_once_the_config_is_fixed(repo):
    (repo / "tiny" / "config.json").write_text("{ not json")
    config = ServerConfig(models=repo)

    async def main():
        registry = ModelRegistry.load(config)
        reloader = Reloader(registry, config)
        before = registry.get("tiny").ready
        unchanged = await reloader.scan()
        write_model(repo, "tiny", versions=(1,))
        fixed = await reloader.scan()
        served = registry.resolve("tiny")
        out = await served.queue.submit(inputs(1, 8))
        await registry.close(1)
        return before, unchanged, fixed, out

    before, unchanged, fixed, out = run(main())
    assert not before and unchanged == []
    assert fixed == ["model tiny: config.json changed, reloaded: ready"]
    np.testing.assert_allclose(out.raw, expected(inputs(1, 8), 1), rtol=1e-5, atol=1e-5)


def finishing_the_copy_during(real, path, data: bytes):
    """``real`` (load_version), except that the file at ``path`` is completed with ``data`` while it
    loads: the load sees the half-written file, the copy finishes before the load returns."""
    def load(*args, **kwargs):
        served = real(*args, **kwargs)
        if served.path == path:
            path.write_bytes(data)
        return served

    return load


def test_a_version_whose_copy_finishes_during_its_failed_load_is_retried(repo, monkeypatch):
    import service.reload

    config = ServerConfig(models=repo)
    path = repo / "tiny" / "2" / "model.onnx"
    monkeypatch.setattr(service.reload, "load_version",
                        finishing_the_copy_during(service.reload.load_version, path, linear_onnx(*weights_for(2))))

    async def main():
        registry = ModelRegistry.load(config)
        reloader = Reloader(registry, config)
        add_version(repo, 2, b"half-written onnx")
        first = await reloader.scan()
        monkeypatch.undo()
        second = await reloader.scan()
        out = await registry.resolve("tiny").queue.submit(inputs(1, 9))
        await registry.close(1)
        return first, second, out

    first, second, out = run(main())
    assert len(first) == 1 and "version 2: NOT loaded" in first[0]
    assert second == ["model tiny version 2: loaded; default version 1 -> 2"]
    np.testing.assert_allclose(out.raw, expected(inputs(1, 9), 2), rtol=1e-5, atol=1e-5)


def test_a_new_model_whose_copy_finishes_during_its_failed_load_is_retried(repo, monkeypatch):
    import service.models

    config = ServerConfig(models=repo)
    path = repo / "other" / "1" / "model.onnx"

    async def main():
        registry = ModelRegistry.load(config)
        reloader = Reloader(registry, config)
        monkeypatch.setattr(service.models, "load_version",
                            finishing_the_copy_during(service.models.load_version, path, linear_onnx(*weights_for(1))))
        write_model(repo, "other", versions=())
        (repo / "other" / "1").mkdir()
        path.write_bytes(b"half-written onnx")
        first = await reloader.scan()
        monkeypatch.undo()
        second = await reloader.scan()
        ready = registry.get("other").ready
        await registry.close(1)
        return first, second, ready

    first, second, ready = run(main())
    assert first == ["model other: added, versions [1], not ready: "
                     + first[0].split("not ready: ", 1)[1]] and "cannot load" in first[0]
    assert second == ["model other version 1: loaded; default version - -> 1"] and ready


def test_a_version_whose_copy_finishes_during_its_failed_load_at_start_is_retried(repo, monkeypatch):
    import service.models
    from service.reload import repository_signatures

    config = ServerConfig(models=repo)
    path = repo / "tiny" / "2" / "model.onnx"
    add_version(repo, 2, b"half-written onnx")
    monkeypatch.setattr(service.models, "load_version",
                        finishing_the_copy_during(service.models.load_version, path, linear_onnx(*weights_for(2))))

    async def main():
        before = repository_signatures(repo)
        registry = ModelRegistry.load(config)
        monkeypatch.undo()
        broken = not registry.get("tiny").versions[2].ready
        reloader = Reloader(registry, config, signatures=before)
        changes = await reloader.scan()
        await registry.close(1)
        return broken, changes

    broken, changes = run(main())
    assert broken and changes == ["model tiny version 2: loaded; default version 1 -> 2"]
