"""What the page needs beyond the v2 API: the page itself, a JSON status of the models, and sample
images from the test sets the trained models were trained on.

``GET /api/status`` lists every model with its readiness, labels, input, whether it was trained
(``trained``: config.json's flag, else the metadata, read defensively) and the cumulative counters of
the metrics (requests, images, batches) with the live queue depth and requests in flight; the page
takes rates and mean batch sizes from the difference of two polls. ``GET /samples`` lists, per
training data set, one test image per class, served as PNG by ``GET /samples/{dataset}/{index}.png``.
The images are handed to the console as files: the sample sets the repository's builder wrote
(``python -m training defaults``: REPO/.samples/<data set>.npz); the server does not import the
training package, and a repository without them (the runtime image's) offers none.
"""
from __future__ import annotations

import asyncio
import functools
import io
import json
import time
from collections import defaultdict
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
from aiohttp import web
from PIL import Image

from exporter.repository import SAMPLES

from ..errors import InvalidInput, ModelNotFound
from ..metrics import Metrics
from ..models import ModelRegistry
from ..settings import DEFAULT_MODEL

PAGE = Path(__file__).with_name("page.html")
COUNTERS = {"convnet_requests_total": "requests", "convnet_images_total": "images",
            "convnet_batches_total": "batches", "convnet_queue_depth": "queue_depth",
            "convnet_inflight_requests": "inflight"}


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

    def __init__(self, registry: ModelRegistry, metrics: Metrics, repository: Path, executor: Executor,
                 samples: Path | None = None):
        self.registry = registry
        self.metrics = metrics
        self.repository = Path(repository)
        self.executor = executor
        self.samples_dir = self.repository / SAMPLES if samples is None else Path(samples)

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

    async def samples(self, request: web.Request) -> web.Response:
        present, sets = sample_sets(self.samples_dir), []
        if not present:
            return web.json_response({"datasets": [], "error": f"no sample images in {self.samples_dir} "
                                                                "(python -m training defaults writes them)"})
        for name in present:
            try:
                images, labels, names = await self._samples(present[name])
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
        known = sample_sets(self.samples_dir)
        if name not in known:
            raise ModelNotFound(f"dataset: no sample set {name!r}; available: {', '.join(known)}")
        images, _, _ = await self._samples(known[name])
        if index >= len(images):
            raise InvalidInput(f"index: expected 0..{len(images) - 1}, received {index}")
        buffer = io.BytesIO()
        Image.fromarray(images[index]).save(buffer, format="PNG")
        return web.Response(body=buffer.getvalue(), content_type="image/png",
                            headers={"Cache-Control": "max-age=3600"})

    async def _samples(self, path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, _read_samples, path, path.stat().st_mtime_ns)


def sample_sets(directory: Path) -> dict[str, Path]:
    """The sample sets present, data set name -> file, sorted by name; none when the folder is missing."""
    try:
        return {p.stem: p for p in sorted(directory.glob("*.npz")) if not p.name.startswith(".")}
    except OSError:
        return {}


@functools.lru_cache(maxsize=8)
def _read_samples(path: Path, mtime_ns: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A sample set's uint8 images, labels and class names (cached per file version)."""
    with np.load(path, allow_pickle=False) as f:
        return f["images"], f["labels"], [str(name) for name in f["names"]]


def default_model(models: list[dict]) -> str | None:
    """The model the page opens on, by ``classify``'s rule (service.client.pick_model): ``fashion``
    if ready, else the first ready trained model by name, else the first ready one."""
    ready = [m for m in models if m["ready"]]
    if not ready:
        return None
    return min(ready, key=lambda m: (m["name"] != DEFAULT_MODEL, m["trained"] is False, m["name"]))["name"]
