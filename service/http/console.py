"""What the page needs beyond the v2 API: the page itself, a JSON status of the models, and sample
images from the test sets the trained models were trained on.

``GET /api/status`` lists every model with its readiness, labels, input, whether it was trained
(``trained``: config.json's flag, else the metadata, read defensively) and the cumulative counters of
the metrics (requests, images, batches) with the live queue depth and requests in flight; the page
takes rates and mean batch sizes from the difference of two polls. ``GET /samples`` lists, per
training data set (``datasets()``), one test image per class, served as PNG by
``GET /samples/{dataset}/{index}.png``.
"""
from __future__ import annotations

import asyncio
import functools
import importlib
import io
import json
import time
from collections import defaultdict
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
from aiohttp import web
from PIL import Image

from ..errors import InvalidInput, ModelNotFound
from ..metrics import Metrics
from ..models import ModelRegistry
from ..settings import DEFAULT_MODEL

PAGE = Path(__file__).with_name("page.html")
SAMPLE_IMAGES = 10
COUNTERS = {"convnet_requests_total": "requests", "convnet_images_total": "images",
            "convnet_batches_total": "batches", "convnet_queue_depth": "queue_depth",
            "convnet_inflight_requests": "inflight"}


def datasets():
    """The training data sets (``training.data``: ``DATASETS``, ``load_dataset``), or None where the
    training package or its dependencies are not installed (the runtime image has no samples)."""
    try:
        return importlib.import_module("training.data")
    except ImportError:
        return None


def read_json(path: Path) -> dict:
    """A JSON object from a file, or {} when it is missing or not an object (never raises)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def trained(model_dir: Path) -> bool | None:
    """config.json's ``trained`` when it is a boolean; else whether the newest version's metadata.json
    records a training run (the exporter writes ``training`` only then); None when there is none."""
    flag = read_json(model_dir / "config.json").get("trained")
    if isinstance(flag, bool):
        return flag
    data = newest_metadata(model_dir)
    return isinstance(data.get("training"), dict) if data else None


def newest_metadata(model_dir: Path) -> dict:
    try:
        versions = sorted((int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()), reverse=True)
    except OSError:
        return {}
    return read_json(model_dir / str(versions[0]) / "metadata.json") if versions else {}


class Console:
    """The page's endpoints, over the registry, the metrics and the model repository."""

    def __init__(self, registry: ModelRegistry, metrics: Metrics, repository: Path, executor: Executor):
        self.registry = registry
        self.metrics = metrics
        self.repository = Path(repository)
        self.executor = executor

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/", self.page)
        app.router.add_get("/api/status", self.status)
        app.router.add_get("/samples", self.samples)
        app.router.add_get("/samples/{dataset}/{index:[0-9]{1,6}}.png", self.sample)

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(body=PAGE.read_bytes(), content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    def counters(self) -> dict[str, dict[str, float]]:
        """Per model: the metrics' counters summed over their other labels."""
        totals: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(COUNTERS.values(), 0.0))
        for family in self.metrics.registry.collect():
            for sample in family.samples:
                key = COUNTERS.get(sample.name)
                if key is not None and "model" in sample.labels:
                    totals[sample.labels["model"]][key] += sample.value
                    if key == "requests" and sample.labels.get("code") != "OK":
                        totals[sample.labels["model"]].setdefault("errors", 0.0)
                        totals[sample.labels["model"]]["errors"] += sample.value
        return totals

    async def status(self, request: web.Request) -> web.Response:
        counters = self.counters()
        models = []
        for model in self.registry.models.values():
            spec = model.spec
            entry = {
                "name": model.name, "ready": model.ready and self.registry.lifecycle.serving,
                "reason": model.not_ready_reason,
                "default_version": model.default.version if model.default else None,
                "versions": [{"version": v.version, "ready": v.ready, "reason": v.reason}
                             for v in sorted(model.versions.values(), key=lambda v: v.version)],
                "trained": trained(self.repository / model.name),
                "dataset": newest_metadata(self.repository / model.name).get("data", {}).get("name"),
                **{"errors": 0.0, **counters.get(model.name, dict.fromkeys(COUNTERS.values(), 0.0))},
            }
            if spec is not None:
                entry.update(labels=list(spec.labels), input={"name": spec.input_name, "shape": list(spec.input_shape),
                                                              "color": spec.preprocessing.color,
                                                              "resize": list(spec.preprocessing.resize)},
                             output=spec.output_name, architecture=spec.architecture)
            models.append(entry)
        return web.json_response({"time": time.time(), "stopping": not self.registry.lifecycle.serving, "models": models,
                                  "default_model": default_model(models)})

    def _dataset_settings(self, dataset: str) -> tuple[tuple[int, int], int, float]:
        """Size, seed and test fraction of the split a served model of ``dataset`` was trained on."""
        for model in self.registry.models.values():
            data = newest_metadata(self.repository / model.name).get("data", {})
            if isinstance(data, dict) and data.get("name") == dataset and model.spec is not None:
                return tuple(model.spec.preprocessing.resize), int(data.get("seed", 0)), float(
                    data.get("test_fraction", 0.2))
        return (32, 32), 0, 0.2

    async def samples(self, request: web.Request) -> web.Response:
        module, sets = datasets(), []
        if module is None:
            return web.json_response({"datasets": [], "error": "sample images need the training package "
                                                                "(pip install convnet-serve[train])"})
        for name in module.DATASETS:
            try:
                images, labels, names = await self._samples(name)
            except Exception as exc:  # a dataset that cannot load here is listed with the reason
                sets.append({"dataset": name, "error": f"{type(exc).__name__}: {exc}"[:300], "images": []})
                continue
            models = [m.name for m in self.registry.models.values()
                      if newest_metadata(self.repository / m.name).get("data", {}).get("name") == name]
            sets.append({"dataset": name, "models": models, "images": [
                {"label": names[int(y)], "class": int(y), "url": f"/samples/{name}/{i}.png"}
                for i, y in enumerate(labels)]})
        return web.json_response({"datasets": sets})

    async def sample(self, request: web.Request) -> web.Response:
        name, index = request.match_info["dataset"], int(request.match_info["index"])
        module = datasets()
        known = module.DATASETS if module is not None else {}
        if name not in known:
            raise ModelNotFound(f"dataset: no sample set {name!r}; available: {', '.join(known)}")
        images, _, _ = await self._samples(name)
        if index >= len(images):
            raise InvalidInput(f"index: expected 0..{len(images) - 1}, received {index}")
        buffer = io.BytesIO()
        Image.fromarray(images[index]).save(buffer, format="PNG")
        return web.Response(body=buffer.getvalue(), content_type="image/png",
                            headers={"Cache-Control": "max-age=3600"})

    async def _samples(self, dataset: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        size, seed, fraction = self._dataset_settings(dataset)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, _first_of_each_class, dataset, size, seed, fraction)


@functools.lru_cache(maxsize=8)
def _first_of_each_class(dataset: str, size: tuple[int, int], seed: int,
                         fraction: float) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The first test image of each class (up to SAMPLE_IMAGES), as uint8 arrays, their labels, the names."""
    split = datasets().load_dataset(dataset, size, seed=seed, test_fraction=fraction)
    picked, seen = [], set()
    for i, y in enumerate(split.test_labels):
        if int(y) not in seen:
            seen.add(int(y))
            picked.append(i)
        if len(picked) == SAMPLE_IMAGES:
            break
    picked.sort(key=lambda i: int(split.test_labels[i]))
    return split.test_images[picked], split.test_labels[picked], list(split.labels)


def default_model(models: list[dict]) -> str | None:
    """The model the page opens on, by ``classify``'s rule (service.client.pick_model): ``fashion``
    if ready, else the first ready trained model by name, else the first ready one."""
    ready = [m for m in models if m["ready"]]
    if not ready:
        return None
    return min(ready, key=lambda m: (m["name"] != DEFAULT_MODEL, m["trained"] is False, m["name"]))["name"]
