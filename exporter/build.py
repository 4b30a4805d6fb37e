"""From an architecture (or spec) to a model version in the repository: parameters, optional
FC->CONV conversion, checked ONNX export and the files the server and the reference read."""
from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path

from . import EXPORTER_VERSION
from .architectures import ModelDefinition, resolve
from .fully_convolutional import to_fully_convolutional
from .graph import Params
from .onnx_export import export_onnx
from .config_schema import model_config
from .repository import check_writable, write_version

Progress = Callable[[str], None]


def export_to_repository(repo: str | Path, definition: ModelDefinition, params: Params, *, seed: int | None,
                         version: int | None = None, fully_convolutional: bool = False, metadata: dict | None = None,
                         overwrite: bool = False, progress: Progress | None = None, trained: bool | None = None) -> Path:
    """Write ``params`` (initialized or trained) as a version of ``definition.network.name``.

    ``metadata`` adds entries to the version's metadata.json (e.g. a test accuracy); ``trained``
    goes into config.json (False: random weights, which clients are told). Returns the version directory.
    """
    step = progress or (lambda _: None)
    network = definition.network
    if fully_convolutional:
        step("converting FC layers to CONV")
        network, params = to_fully_convolutional(network, params)
    config = model_config(network, architecture=definition.architecture, spec=definition.spec, labels=definition.labels,
                          preprocessing=definition.preprocessing, fully_convolutional=fully_convolutional, trained=trained)
    check_writable(repo, config, version, overwrite)
    props = {
        "architecture": definition.architecture, "input_shape": config["input"]["shape"], "labels": definition.labels,
        "preprocessing": config["preprocessing"], "spec": definition.spec or "", "seed": "" if seed is None else seed,
        "exporter_version": EXPORTER_VERSION, "fully_convolutional": fully_convolutional,
    }
    step("exporting and checking ONNX")
    onnx_bytes = export_onnx(network, params, props, fully_convolutional)
    info = {
        "architecture": definition.architecture, "spec": definition.spec, "seed": seed, "exporter_version": EXPORTER_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "params": network.num_params(), "fully_convolutional": fully_convolutional, **(metadata or {}),
    }
    step("writing the repository")
    return write_version(repo, config, version, onnx_bytes=onnx_bytes, network=network, params=params,
                         metadata=info, overwrite=overwrite)


def build(arch_or_spec: str, repo: str | Path, *, name: str | None = None, seed: int = 0, version: int | None = None,
          fully_convolutional: bool = False, overwrite: bool = False, progress: Progress | None = None) -> Path:
    """Build a built-in architecture or a spec with He-initialized weights from ``seed``."""
    step = progress or (lambda _: None)
    step("building the graph")
    definition = resolve(arch_or_spec, name)
    step("initializing parameters")
    params = definition.network.init_params(seed)
    return export_to_repository(repo, definition, params, seed=seed, version=version, trained=False,
                                fully_convolutional=fully_convolutional, overwrite=overwrite, progress=progress)
