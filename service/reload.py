"""Zero-downtime model updates: rescan the repository on SIGHUP or every ``reload_interval_s``.

- A new version directory is loaded (sessions created and warmed up in a thread, off the event
  loop) and only then added; being the newest ready version it becomes the default, so requests
  that name no version move to it while requests already queued on the old version finish there.
- A new version that fails to load is recorded not ready with its reason and never becomes the
  default; it is retried when its model.onnx changes (a copy that was still being written). The
  file's size and time are read before the load, so a copy that finishes during a failed load is
  a change too.
- A version directory that disappears is withdrawn (new requests for it get NOT_FOUND) and its
  queue drains its work within ``shutdown_grace_s`` before its sessions are dropped.
- A new model directory is loaded as a whole, and so is a model whose config.json was in error once
  that file changes. A rescan does not re-read the config.json of a model that loaded; model
  control's Load does (``Reloader.load``: all or nothing, as Triton's load).
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Awaitable, Callable

from exporter.repository import MODEL, RepositoryError, list_versions

from .config import ServerConfig
from .errors import LoadFailed
from .metrics import Metrics
from .models import ModelRegistry, ServedModel, ServedVersion, load_model, load_version
from .repository import model_dirs, read_spec
from .sessions import session_options

log = logging.getLogger(__name__)


Signature = tuple[int, int] | None


def _signature(path: Path) -> Signature:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def repository_signatures_of(model_dir: Path) -> dict[Path, Signature]:
    """(mtime, size) of one model directory's config.json and every <version>/model.onnx."""
    found = {model_dir / "config.json": _signature(model_dir / "config.json")}
    for number in list_versions(model_dir):
        path = model_dir / str(number) / MODEL
        found[path] = _signature(path)
    return found


def repository_signatures(root: Path) -> dict[Path, Signature]:
    """(mtime, size) of every config.json and <version>/model.onnx under ``root``: taken before a
    load, so that a file that changes while it loads is seen as changed afterwards."""
    try:
        dirs = model_dirs(root)
    except RepositoryError:
        return {}
    return {path: signature for model_dir in dirs for path, signature in repository_signatures_of(model_dir).items()}


class Reloader:
    """Brings the registry in line with the repository on disk, one scan at a time."""

    def __init__(self, registry: ModelRegistry, config: ServerConfig, metrics: Metrics | None = None,
                 on_change: Callable[[], Awaitable[None]] | None = None,
                 signatures: dict[Path, Signature] | None = None):
        """``signatures``: ``repository_signatures`` taken before ``registry`` was loaded (without it,
        the files as they are now)."""
        self.registry = registry
        self.config = config
        self.metrics = metrics
        self.on_change = on_change
        self._options = session_options(config)
        self.lock = asyncio.Lock()
        """Held by each scan, and by model control around its loads and unloads."""
        before = (lambda path: signatures.get(path)) if signatures is not None else _signature
        self._failed: dict[tuple[str, int], Signature] = {
            (m.name, v.version): before(v.path) for m in registry.models.values()
            for v in m.versions.values() if not v.ready}
        self._failed_configs: dict[str, Signature] = {
            m.name: before(config.models / m.name / "config.json") for m in registry.models.values() if m.spec is None}
        self._draining: set[asyncio.Task] = set()
        self.unloaded: set[str] = set()
        self._poller: asyncio.Task | None = None

    def start(self, interval_s: float) -> None:
        """Poll every ``interval_s`` seconds (0 = only on request, e.g. SIGHUP)."""
        if interval_s > 0 and self._poller is None:
            self._poller = asyncio.create_task(self._poll(interval_s))

    def trigger(self) -> None:
        """Scan soon (from a signal handler)."""
        task = asyncio.get_running_loop().create_task(self.scan())
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)

    async def _poll(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.scan()
            except Exception:  # a scan must never stop the poller
                log.exception("model repository scan failed")

    async def scan(self) -> list[str]:
        """Load what is new, withdraw what is gone; returns one line per change (also logged)."""
        async with self.lock:
            changes = await self._scan()
        for line in changes:
            log.info("reload: %s", line)
        if changes and self.on_change is not None:
            await self.on_change()
        return changes

    async def _scan(self) -> list[str]:
        if self.registry.stopping:
            return []
        try:
            on_disk = {d.name: d for d in model_dirs(self.config.models)}
        except RepositoryError as exc:
            log.error("reload: %s", exc)
            return []
        changes = []
        for name, model_dir in on_disk.items():
            if name not in self.unloaded:
                changes += await self.sync(name, model_dir)
        for name in sorted(set(self.registry.models) - set(on_disk)):
            model = self.registry.models[name]
            for number in sorted(model.versions):
                changes.append(self._withdraw(model.versions.pop(number)))
            if not model.reason:
                model.reason = "removed from the model repository"
        return changes

    async def sync(self, name: str, model_dir: Path) -> list[str]:
        """Bring one model in line with its directory: load it, its new versions or its fixed
        config.json, withdraw versions that are gone. Callers other than scan() hold ``lock``."""
        changes: list[str] = []
        providers = self.registry.providers
        model = self.registry.models.get(name)
        if model is None:
            before = repository_signatures_of(model_dir)
            loaded = await asyncio.to_thread(load_model, model_dir, self.config, self._options, providers, self.metrics)
            self.registry.models[name] = loaded
            self._remember_failures(loaded.name, loaded.versions.values(), before)
            if loaded.spec is None:
                self._failed_configs[name] = before.get(model_dir / "config.json")
            changes.append(f"model {name}: added, versions {sorted(loaded.versions) or '-'}, "
                           f"{'ready' if loaded.ready else 'not ready: ' + loaded.not_ready_reason}")
            return changes
        if model.spec is None:  # its config.json was in error: load it again once the file changes
            signature = _signature(model_dir / "config.json")
            if self._failed_configs.setdefault(name, signature) != signature:
                before = repository_signatures_of(model_dir)
                loaded = await asyncio.to_thread(load_model, model_dir, self.config, self._options, providers,
                                                 self.metrics)
                self.registry.models[name] = loaded
                self._remember_failures(name, loaded.versions.values(), before)
                self._failed_configs[name] = signature
                changes.append(f"model {name}: config.json changed, reloaded: "
                               f"{'ready' if loaded.ready else 'not ready: ' + loaded.not_ready_reason}")
            return changes
        present = set(list_versions(model_dir))
        for number in sorted(present):
            path = model_dir / str(number) / MODEL
            known = model.versions.get(number)
            if known is not None and (known.ready or self._failed.get((name, number)) == _signature(path)):
                continue
            batching = self.config.batching_for(name, model.spec.batching)
            before = {path: _signature(path)}
            served = await asyncio.to_thread(load_version, model_dir, number, model.spec, batching, self._options,
                                             providers, self.metrics)
            self._remember_failures(name, [served], before)
            previous = model.default
            model.versions[number] = served
            model.reason = ""
            if served.ready:
                now = model.default
                changes.append(f"model {name} version {number}: loaded" + (
                    f"; default version {previous.version if previous else '-'} -> {now.version}"
                    if now is not previous else ""))
            else:
                changes.append(f"model {name} version {number}: NOT loaded, "
                               f"{'still serving version ' + str(previous.version) if previous else 'model not ready'}"
                               f": {served.reason}")
        for number in sorted(set(model.versions) - present):
            changes.append(self._withdraw(model.versions.pop(number)))
        return changes

    async def load(self, name: str, model_dir: Path) -> list[str]:
        """Triton's load: config.json and the version set read again and checked as at start-up;
        every version that is new, not ready, or served under a config.json that changed is loaded
        (off the event loop). Either all of them load and the model is swapped in, the versions
        it replaces finishing their queued work, or LoadFailed names what is wrong and the
        registry is left as it was. Callers hold ``lock``."""
        try:
            spec = await asyncio.to_thread(read_spec, model_dir)
            batching = self.config.batching_for(name, spec.batching)
        except (RepositoryError, ValueError) as exc:
            raise LoadFailed(f"model {name!r} not loaded: {exc}") from None
        numbers = list_versions(model_dir)
        if not numbers:
            raise LoadFailed(f"model {name!r} not loaded: {model_dir}: no versions (expected <version>/{MODEL})")
        old = self.registry.models.get(name)
        same_config = old is not None and old.spec == spec
        keep = {n: old.versions[n] for n in numbers if same_config and n in old.versions and old.versions[n].ready}
        wanted = [n for n in numbers if n not in keep]
        providers = self.registry.providers
        loaded = await asyncio.to_thread(lambda: [load_version(model_dir, n, spec, batching, self._options, providers,
                                                               self.metrics) for n in wanted])
        failed = [v for v in loaded if not v.ready]
        if failed:
            await self._discard(loaded, old)
            serving = old.default if old is not None else None
            raise LoadFailed(f"model {name!r} not loaded ("
                             + (f"still serving version {serving.version}" if serving else "nothing served") + "): "
                             + "; ".join(f"version {v.version}: {v.reason}" for v in failed))
        model = ServedModel(name, spec, {**keep, **{v.version: v for v in loaded}})
        previous = old.default if old is not None else None
        self.registry.models[name] = model
        self._failed_configs.pop(name, None)
        for number in numbers:
            self._failed.pop((name, number), None)
        changes = []
        for served in (old.versions.values() if old is not None else ()):
            if served.version not in model.versions:
                changes.append(self._withdraw(served))
            elif keep.get(served.version) is not served and served.ready:
                changes.append(self._retire(served))
        if loaded:
            changes.insert(0, f"model {name}: {'config.json changed, ' if old is not None and not same_config else ''}"
                              f"versions {[v.version for v in loaded]} loaded; default version "
                              f"{previous.version if previous else '-'} -> {model.default.version}")
        return changes

    async def _discard(self, loaded: list[ServedVersion], old: ServedModel | None) -> None:
        """Undo a failed load: stop the versions it started and give the metrics back to the old ones."""
        await asyncio.gather(*(v.queue.close(0) for v in loaded if v.queue is not None))
        if self.metrics is None:
            return
        for served in loaded:
            before = old.versions.get(served.version) if old is not None else None
            shown = before or served
            self.metrics.model_state(shown.model, shown.version, before is not None and before.ready,
                                     shown.providers, shown.batching.max_batch_size)

    def _retire(self, served: ServedVersion) -> str:
        """A ready version that a load replaced with new sessions of the same number: its queue
        finishes what it holds (the new version's metrics stay)."""
        task = asyncio.get_running_loop().create_task(served.queue.close(self.config.shutdown_grace_s,
                                                                         "a load replaced it"))
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)
        return f"model {served.model} version {served.version}: replaced, the old sessions unloaded after their queue drains"

    def _remember_failures(self, model: str, served_versions, before: dict[Path, Signature]) -> None:
        """Versions that failed are retried once their model.onnx differs from ``before`` (the load's start)."""
        for served in served_versions:
            if served.ready:
                self._failed.pop((model, served.version), None)
            else:
                self._failed[model, served.version] = before.get(served.path)

    def _withdraw(self, served: ServedVersion) -> str:
        """Stop routing to a version that left the repository; its queue finishes what it holds."""
        self._failed.pop((served.model, served.version), None)
        if self.metrics is not None:
            self.metrics.model_state(served.model, served.version, False, served.providers, served.batching.max_batch_size)
        if served.queue is not None:
            task = asyncio.get_running_loop().create_task(served.queue.close(self.config.shutdown_grace_s))
            self._draining.add(task)
            task.add_done_callback(self._draining.discard)
        return f"model {served.model} version {served.version}: removed from the repository, unloaded after its queue drains"

    async def stop(self) -> None:
        """Stop polling and wait for withdrawn versions to drain."""
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        if self._draining:
            await asyncio.gather(*self._draining, return_exceptions=True)
