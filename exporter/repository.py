"""The model repository on disk (DESIGN.md): writing a model version and reading it back.

    REPO/<model>/config.json
    REPO/<model>/<version>/{model.onnx, graph.json, weights.npz, metadata.json}

A version directory is written under a temporary name and renamed into place, so a reader never
sees half a version. Model names and versions are validated before they touch a path, so nothing
from outside (a request, a command line) can reach outside the repository. The reference forward
pass is recomputed from a version's graph.json and weights.npz alone.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .config_schema import RepositoryError
from .graph import Network, Params

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_NAME_LENGTH = 128
VERSION_DIR = re.compile(r"^[1-9][0-9]*$")
CONFIG, MODEL, GRAPH, WEIGHTS, METADATA = "config.json", "model.onnx", "graph.json", "weights.npz", "metadata.json"
SAMPLES = ".samples"
"""REPO/.samples/<data set>.npz: the page's sample images, written by the repository's builder (training.samples)."""


def check_model_name(name: Any) -> str:
    if not isinstance(name, str) or not MODEL_NAME.match(name) or len(name) > MAX_NAME_LENGTH:
        raise RepositoryError(f"model name must match {MODEL_NAME.pattern} (at most {MAX_NAME_LENGTH} characters), got {name!r}")
    return name


def check_version(version: Any) -> int:
    """A positive integer, given as an int or its decimal string."""
    if isinstance(version, str) and VERSION_DIR.match(version):
        return int(version)
    if isinstance(version, (int, np.integer)) and not isinstance(version, bool) and version > 0:
        return int(version)
    raise RepositoryError(f"version must be a positive integer, got {version!r}")


def model_dir(repo: str | Path, name: str) -> Path:
    return Path(repo) / check_model_name(name)


def list_versions(model_path: str | Path) -> list[int]:
    """The versions present (directories named by a positive integer holding a model.onnx), ascending."""
    path = Path(model_path)
    if not path.is_dir():
        return []
    return sorted(int(p.name) for p in path.iterdir() if VERSION_DIR.match(p.name) and (p / MODEL).is_file())


def resolve_version(model_path: str | Path, version: Any = None) -> int:
    """The requested version, or the newest one when ``version`` is None."""
    versions = list_versions(model_path)
    if not versions:
        raise RepositoryError(f"{model_path}: no versions (expected <version>/{MODEL} under it)")
    if version is None:
        return versions[-1]
    v = check_version(version)
    if v not in versions:
        raise RepositoryError(f"{model_path}: no version {v}; available: {versions}")
    return v


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def check_writable(repo: str | Path, config: dict, version: int | None, overwrite: bool = False) -> tuple[dict, int]:
    """Before any work: the config to write (an existing model keeps its batching, and must agree on
    input, output and labels) and the version number (``None``: the next free one)."""
    mdir = model_dir(repo, config["name"])
    config_path = mdir / CONFIG
    if config_path.is_file():
        old = read_config(mdir)
        for key in ("input", "output", "labels", "fully_convolutional"):
            if old.get(key) != config[key]:
                raise RepositoryError(f"{config_path}: {key} is {old.get(key)!r} but this version has {config[key]!r}; "
                                      "write it under another model name")
        config = {**config, "batching": old.get("batching", config["batching"])}
    v = (max(list_versions(mdir), default=0) + 1) if version is None else check_version(version)
    if (mdir / str(v)).exists() and not overwrite:
        raise RepositoryError(f"{mdir / str(v)} already exists; choose another version (or overwrite)")
    return config, v


def write_version(repo: str | Path, config: dict, version: int | None, *, onnx_bytes: bytes, network: Network,
                  params: Params, metadata: dict, overwrite: bool = False) -> Path:
    """Write one version directory, then config.json; returns the version directory."""
    config, v = check_writable(repo, config, version, overwrite)
    network.check_params(params)
    mdir = model_dir(repo, config["name"])
    mdir.mkdir(parents=True, exist_ok=True)
    target = mdir / str(v)
    staging = Path(tempfile.mkdtemp(prefix=f".{v}.tmp-", dir=mdir))
    try:
        (staging / MODEL).write_bytes(onnx_bytes)
        (staging / GRAPH).write_text(json.dumps(network.to_dict(), indent=1) + "\n")
        np.savez(staging / WEIGHTS, **{k: np.asarray(a, dtype=np.float32) for k, a in params.items()})
        (staging / METADATA).write_text(json.dumps({"version": v, **metadata}, indent=2) + "\n")
        staging.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _write_json(mdir / CONFIG, config)
    return target


def read_config(model_path: str | Path) -> dict:
    path = Path(model_path) / CONFIG
    if not path.is_file():
        raise RepositoryError(f"{path} not found: not a model directory")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RepositoryError(f"{path}: not valid JSON ({e})") from e


def load_reference(model_path: str | Path, version: Any = None) -> tuple[Network, Params, dict]:
    """(network, params, config) of one version (newest by default), from graph.json and weights.npz."""
    config = read_config(model_path)
    vdir = Path(model_path) / str(resolve_version(model_path, version))
    try:
        network = Network.from_dict(json.loads((vdir / GRAPH).read_text()))
        with np.load(vdir / WEIGHTS) as weights:
            params = {k: weights[k] for k in weights.files}
    except (OSError, ValueError) as e:
        raise RepositoryError(f"{vdir}: cannot read the reference model: {e}") from e
    network.check_params(params)
    return network, params, config


def check_input(x: Any, config: dict) -> np.ndarray:
    """x as float32 (N, C, H, W), or an error naming the expected and the received shape."""
    expected = [int(d) for d in config["input"]["shape"]]
    arr = np.asarray(x)
    fits = arr.ndim == 4 and all(e == -1 or e == g for e, g in zip(expected, arr.shape[1:]))
    if not fits:
        want = ", ".join("?" if d == -1 else str(d) for d in expected)
        raise RepositoryError(f"input: expected shape (N, {want}), received {tuple(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.number):
        raise RepositoryError(f"input: expected float32 values, received dtype {arr.dtype}")
    return arr.astype(np.float32, copy=False)


def reference_forward(model_path: str | Path, x: Any, version: Any = None) -> np.ndarray:
    """The NumPy scores for a batch, recomputed from the repository alone."""
    network, params, config = load_reference(model_path, version)
    return network.predict(check_input(x, config), params)
