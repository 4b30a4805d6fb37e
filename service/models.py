"""The served models: every model of the repository, each version with its sessions and batch queue.

A model or version that fails to load is kept, not ready, with the reason; the others serve.
A request naming no version gets the model's default: its newest version that loaded.
"""
from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from exporter.repository import MODEL, RepositoryError, list_versions

from .batching import BatchQueue
from .admission import Lifecycle, Stage
from .settings import BatchSettings
from .config import ServerConfig
from .errors import ModelNotFound, ModelNotReady, ShuttingDown
from .metrics import Metrics
from .repository import ModelSpec, model_dirs, read_spec
from .sessions import Providers, SessionLoadError, load_instances, make_compute, session_options

log = logging.getLogger(__name__)


@dataclass
class ServedVersion:
    model: str
    version: int
    path: Path
    batching: BatchSettings
    queue: BatchQueue | None = None
    providers: list[str] = field(default_factory=list)
    reason: str = ""

    @property
    def ready(self) -> bool:
        return self.queue is not None and not self.queue.closed


@dataclass
class ServedModel:
    name: str
    spec: ModelSpec | None
    versions: dict[int, ServedVersion] = field(default_factory=dict)
    reason: str = ""

    @property
    def default(self) -> ServedVersion | None:
        """The newest ready version."""
        newest = None
        for v in self.versions.values():
            if (newest is None or v.version > newest.version) and v.ready:
                newest = v
        return newest

    @property
    def ready(self) -> bool:
        return self.default is not None

    @property
    def not_ready_reason(self) -> str:
        if self.ready:
            return ""
        if self.reason:
            return self.reason
        return "; ".join(f"version {v.version}: {v.reason or 'stopped'}" for v in self.versions.values())


def _short_list(names) -> str:
    names = [str(n) for n in names]
    return ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "") or "none"


class ModelRegistry:
    """Name -> ServedModel, and the lookup every servicer uses."""

    def __init__(self, models: dict[str, ServedModel], providers: Providers | None = None,
                 lifecycle: Lifecycle | None = None):
        self.models = models
        self.providers = providers
        self.lifecycle = lifecycle or Lifecycle()
        """The server's one lifecycle (service.admission): every readiness answer reads it."""

    @property
    def stopping(self) -> bool:
        """The batch queues are closed: new requests are ShuttingDown."""
        return self.lifecycle.stage >= Stage.CLOSED

    @classmethod
    def load(cls, config: ServerConfig, metrics: Metrics | None = None,
             lifecycle: Lifecycle | None = None) -> "ModelRegistry":
        """Load every model of ``config.models`` (blocking: sessions are created and warmed up)."""
        providers = Providers.resolve(config.providers)
        options = session_options(config)
        models = {}
        for model_dir in model_dirs(config.models):
            models[model_dir.name] = load_model(model_dir, config, options, providers, metrics)
        return cls(models, providers, lifecycle)

    def get(self, name: str) -> ServedModel:
        model = self.models.get(name)
        if model is None:
            raise ModelNotFound(f"model: no model named {name!r}; available: {_short_list(self.models)}")
        return model

    def find_version(self, model: ServedModel, version: int) -> ServedVersion:
        """Version ``version`` of ``model``, ready or not."""
        served = model.versions.get(version)
        if served is None:
            raise ModelNotFound(f"version: model {model.name!r} has no version {version}; "
                                f"available: {_short_list(sorted(model.versions))}")
        return served

    def lookup(self, name: str, version: int = 0) -> tuple[ServedModel, ServedVersion | None]:
        """Model ``name`` and its version ``version`` (0 = the default, None when none is ready), ready or not."""
        model = self.get(name)
        return model, self.find_version(model, version) if version else model.default

    def resolve(self, name: str, version: int | None = None) -> ServedVersion:
        """The version to run for a request: ``version`` (None or 0 = the default) of model ``name``."""
        model = self.get(name)
        if self.stopping:
            raise ShuttingDown(f"model {name!r}: the server is shutting down and accepts no new requests")
        if not version:
            served = model.default
            if served is None:
                raise ModelNotReady(f"model {name!r} is not ready: {model.not_ready_reason}")
            return served
        served = self.find_version(model, version)
        if not served.ready:
            raise ModelNotReady(f"model {name!r} version {version} is not ready: {served.reason or 'stopped'}")
        return served

    def ready(self) -> bool:
        """The server is ready when every model found serves at least one version."""
        return bool(self.models) and all(m.ready for m in self.models.values())

    async def close(self, grace: float | None) -> None:
        """Stop every queue: refuse new requests, finish queued ones within ``grace`` seconds."""
        self.lifecycle.advance(Stage.CLOSED)
        queues = [v.queue for m in self.models.values() for v in m.versions.values() if v.queue is not None]
        await asyncio.gather(*(q.close(grace) for q in queues))


def load_model(model_dir: Path, config: ServerConfig, options, providers: Providers,
               metrics: Metrics | None) -> ServedModel:
    """One model directory: its checked config.json and every version (blocking)."""
    name = model_dir.name
    try:
        spec = read_spec(model_dir)
        batching = config.batching_for(name, spec.batching)
    except (RepositoryError, ValueError) as exc:
        log.error("model %s: not ready: %s", name, exc)
        return ServedModel(name, None, reason=str(exc))
    model = ServedModel(name, spec)
    found = list_versions(model_dir)
    if not found:
        model.reason = f"no versions in {model_dir} (expected <version>/{MODEL})"
        log.error("model %s: not ready: %s", name, model.reason)
    for number in found:
        model.versions[number] = load_version(model_dir, number, spec, batching, options, providers, metrics)
    return model


def with_test_hook(compute, model: str):
    """``compute``, wrapped by the fault-injection test hook (service/faults.py) only when one of its
    CONVNET_INJECT_* variables is set; otherwise the hook is not even imported."""
    if not any(value for key, value in os.environ.items() if key.startswith("CONVNET_INJECT_")):
        return compute
    from . import faults

    return faults.inject(compute, model)


def load_version(model_dir: Path, number: int, spec: ModelSpec, batching: BatchSettings, options,
                 providers: Providers, metrics: Metrics | None) -> ServedVersion:
    """One version's warmed-up sessions and batch queue, or the version not ready with the reason."""
    name = model_dir.name
    served = ServedVersion(name, number, model_dir / str(number) / MODEL, batching)
    try:
        sessions = load_instances(served.path, spec, batching.instances, options, providers, batching.max_batch_size)
        compute = with_test_hook(make_compute(sessions, spec), f"{name}:{number}")
    except Exception as exc:  # SessionLoadError, or onnxruntime's own error from the warm-up run
        first_line = (str(exc).strip().splitlines() or [""])[0]
        served.reason = str(exc) if isinstance(exc, SessionLoadError) else f"{served.path}: {type(exc).__name__}: {first_line}"
        log.error("model %s version %d: not ready: %s", name, number, served.reason)
    else:
        served.providers = sessions[0].get_providers()
        observer = metrics.queue_observer(name, number, batching.priority.priority_levels) if metrics else None
        served.queue = BatchQueue(compute, batching, name=f"{name}:{number}", observer=observer)
    if metrics:
        metrics.model_state(name, number, served.ready, served.providers, batching.max_batch_size)
    return served
