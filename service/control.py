"""Explicit model control: the KServe v2 / Triton model repository extension's index, load, unload.

The index answers in either mode, as Triton's does. Load and unload are off unless the operator
starts the server with ``--model-control explicit`` (``none`` is the default), so that a public
server cannot be reconfigured by its callers. Load reads the model's config.json and version set
again and checks them as start-up does (``Reloader.load``): it fails, naming the file, field,
expected and received value, and leaves what serves untouched, or swaps the new model in whole.
Unload refuses new requests for the model at once (UNAVAILABLE: the model still exists and can
be loaded again, as Triton answers), lets the requests already queued finish within
``shutdown_grace_s``, and keeps the model out of repository rescans until it is loaded again.
The server starts with every model of the repository loaded, in either mode.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from .errors import ControlDisabled, InvalidInput, LoadFailed, ModelNotFound
from .repository import model_dirs
from .reload import Reloader

log = logging.getLogger(__name__)

MODES = ("none", "explicit")
READY, UNAVAILABLE = "READY", "UNAVAILABLE"


@dataclass(frozen=True)
class IndexEntry:
    name: str
    version: str
    state: str
    reason: str


class ModelControl:
    """Index, load and unload over the registry, serialised with the reloader's scans."""

    def __init__(self, reloader: Reloader, mode: str = "none"):
        if mode not in MODES:
            raise ValueError(f"model_control: expected one of {', '.join(MODES)}, got {mode!r}")
        self.reloader = reloader
        self.registry = reloader.registry
        self.mode = mode

    def _check(self, repository: str, changes: bool = True) -> None:
        """Refuse a load or unload while control is off (``changes``), and any other repository than ours."""
        if changes and self.mode != "explicit":
            raise ControlDisabled("model control is off (model_control = none); start the server with "
                                  "--model-control explicit to load and unload models")
        if repository:
            raise ModelNotFound(f"repository_name: expected '' (this server has one repository), received {repository!r}")

    def index(self, repository: str = "", ready_only: bool = False) -> list[IndexEntry]:
        """Every model of the repository directory and of the registry: one entry per version
        (one without a version for a model that has none loaded), with its state and reason.
        Answered whatever the control mode, as Triton's index is."""
        self._check(repository, changes=False)
        names = {d.name for d in model_dirs(self.reloader.config.models)} | set(self.registry.models)
        entries = []
        for name in sorted(names):
            model = self.registry.models.get(name)
            if model is None:
                entries.append(IndexEntry(name, "", UNAVAILABLE, "not loaded"))
                continue
            if not model.versions:
                entries.append(IndexEntry(name, "", UNAVAILABLE, model.not_ready_reason))
            for number in sorted(model.versions):
                served = model.versions[number]
                entries.append(IndexEntry(name, str(number), READY if served.ready else UNAVAILABLE,
                                          "" if served.ready else served.reason or "stopped"))
        return [e for e in entries if e.state == READY] if ready_only else entries

    async def load(self, name: str, repository: str = "", parameters: dict | None = None) -> list[str]:
        """Load model ``name`` from the repository directory again: all of it or nothing
        (``Reloader.load``). ``parameters``: Triton's config and file overrides, refused (none is supported)."""
        self._check(repository)
        if parameters:
            raise InvalidInput(f"parameters: expected none (the model's config.json and files are read from the "
                               f"repository; Triton's 'config' and 'file:' overrides are not supported), "
                               f"received {sorted(parameters)}")
        dirs = {d.name: d for d in model_dirs(self.reloader.config.models)}
        if name not in dirs:
            raise ModelNotFound(f"model_name: no model {name!r} in the repository {self.reloader.config.models}; "
                                f"found: {', '.join(sorted(dirs)) or 'none'}")
        async with self.reloader.lock:
            try:
                changes = await self.reloader.load(name, dirs[name])
            except LoadFailed as exc:
                log.error("model control: %s", exc)
                raise
            self.reloader.unloaded.discard(name)
        for line in changes or [f"model {name}: unchanged, already serving"]:
            log.info("model control: %s", line)
        if changes and self.reloader.on_change is not None:
            await self.reloader.on_change()
        return changes

    async def unload(self, name: str, repository: str = "") -> None:
        """Refuse new requests for ``name`` now, finish its queued ones, then drop its sessions."""
        self._check(repository)
        model = self.registry.get(name)
        async with self.reloader.lock:
            self.reloader.unloaded.add(name)
            model.reason = "unloaded (RepositoryModelUnload); load it again with RepositoryModelLoad"
            queues = []
            for served in model.versions.values():
                if served.queue is not None and not served.queue.closed:
                    served.reason = "unloaded"
                    queues.append(served.queue)
                    if self.reloader.metrics is not None:
                        self.reloader.metrics.model_state(served.model, served.version, False, served.providers,
                                                          served.batching.max_batch_size)
            await asyncio.gather(*(q.close(self.reloader.config.shutdown_grace_s, "it is being unloaded") for q in queues))
        log.info("model control: model %s unloaded (%d versions drained)", name, len(queues))
        if self.reloader.on_change is not None:
            await self.reloader.on_change()
