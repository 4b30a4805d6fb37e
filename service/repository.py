"""What the server reads from the model repository: the models present and each one's config.json.

The layout and the file reader are the exporter's (``exporter.repository``, DESIGN.md); this module
turns a config.json into a typed, validated ``ModelSpec``, so a broken one is reported once, at
load, with the field at fault, and the request path never looks at raw JSON.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporter.repository import MODEL_NAME, RepositoryError, list_versions, read_config

from .priority import PRIORITY_FIELDS, PrioritySettings
from .settings import BatchSettings


@dataclass(frozen=True)
class Preprocessing:
    """How an encoded image becomes the network's input (DESIGN.md): decode, convert to ``color``,
    resize to ``resize`` (H, W) bilinearly, then ``(pixel * scale - mean[c]) / std[c]``."""

    color: str
    resize: tuple[int, int]
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def channels(self) -> int:
        return 3 if self.color == "rgb" else 1


@dataclass(frozen=True)
class ModelSpec:
    """A model's config.json, checked: input/output tensors, labels, preprocessing, batching."""

    name: str
    input_name: str
    input_shape: tuple[int, int, int]  # (C, H, W); -1 = any size (fully convolutional)
    output_name: str
    output_shape: tuple[int, ...]  # (classes,) or (classes, -1, -1)
    labels: tuple[str, ...]
    preprocessing: Preprocessing
    batching: BatchSettings
    architecture: str = ""
    spec: str = ""
    fully_convolutional: bool = False

    @property
    def classes(self) -> int:
        return self.output_shape[0]

    def example_shape(self) -> tuple[int, int, int]:
        """A concrete per-image shape: the input shape, with the resize size for variable H and W."""
        c, h, w = self.input_shape
        rh, rw = self.preprocessing.resize
        return c, h if h > 0 else rh, w if w > 0 else rw


def _field(config: dict, path: str) -> Any:
    value: Any = config
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise RepositoryError(f"config.json: missing field {path!r}")
        value = value[key]
    return value


def _ints(config: dict, path: str, length: int | None = None, allow_variable: bool = False) -> tuple[int, ...]:
    value = _field(config, path)
    ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ok = ok and all(v >= 1 or (allow_variable and v == -1) for v in value)
    if not ok or (length is not None and len(value) != length):
        what = f"{length} " if length else ""
        raise RepositoryError(f"config.json: {path}: expected a list of {what}positive integers"
                              f"{' (-1 = variable)' if allow_variable else ''}, got {value!r}")
    return tuple(value)


def _numbers(config: dict, path: str, length: int) -> tuple[float, ...]:
    value = _field(config, path)
    if (not isinstance(value, list) or len(value) != length
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise RepositoryError(f"config.json: {path}: expected a list of {length} numbers, got {value!r}")
    return tuple(float(v) for v in value)


def spec_from_config(config: dict, name: str) -> ModelSpec:
    """Check a parsed config.json (for the model directory ``name``) and type it."""
    if config.get("name", name) != name:
        raise RepositoryError(f"config.json: name: expected the directory name {name!r}, got {config.get('name')!r}")
    for path in ("input.datatype", "output.datatype"):
        if _field(config, path) != "FP32":
            raise RepositoryError(f"config.json: {path}: expected 'FP32', got {_field(config, path)!r}")
    layout = config["input"].get("layout", "NCHW")
    if layout != "NCHW":
        raise RepositoryError(f"config.json: input.layout: expected 'NCHW', got {layout!r}")
    input_shape = _ints(config, "input.shape", 3, allow_variable=True)
    output_shape = _ints(config, "output.shape", allow_variable=True)
    labels = _field(config, "labels")
    if not isinstance(labels, list) or not all(isinstance(v, str) for v in labels) or len(labels) != output_shape[0]:
        raise RepositoryError(f"config.json: labels: expected {output_shape[0]} strings (output.shape[0]), got {labels!r}")
    color = _field(config, "preprocessing.color")
    if color not in ("rgb", "gray"):
        raise RepositoryError(f"config.json: preprocessing.color: expected 'rgb' or 'gray', got {color!r}")
    channels = 3 if color == "rgb" else 1
    if input_shape[0] != channels:
        raise RepositoryError(f"config.json: input.shape[0]: expected {channels} channels for color {color!r}, "
                              f"got {input_shape[0]}")
    scale = _field(config, "preprocessing.scale")
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or scale <= 0:
        raise RepositoryError(f"config.json: preprocessing.scale: expected a positive number, got {scale!r}")
    std = _numbers(config, "preprocessing.std", channels)
    if any(s <= 0 for s in std):
        raise RepositoryError(f"config.json: preprocessing.std: expected positive numbers, got {list(std)!r}")
    preprocessing = Preprocessing(color, _ints(config, "preprocessing.resize", 2), float(scale),
                                  _numbers(config, "preprocessing.mean", channels), std)
    batching = config.get("batching", {})
    if not isinstance(batching, dict):
        raise RepositoryError(f"config.json: batching: expected an object, got {batching!r}")
    if "priority" in batching:
        raise RepositoryError(f"config.json: batching.priority: unknown setting; expected Triton's "
                              f"{', '.join(PRIORITY_FIELDS)}")
    try:
        plain = {k: v for k, v in batching.items() if k not in PRIORITY_FIELDS}
        batching = BatchSettings(**{**plain, "preferred_batch_sizes": tuple(batching.get("preferred_batch_sizes", ())),
                                    "priority": PrioritySettings.parse(batching)})
    except TypeError as exc:
        raise RepositoryError(f"config.json: batching: {exc}") from None
    except ValueError as exc:
        raise RepositoryError(f"config.json: {exc}") from None
    return ModelSpec(
        name=name, input_name=_field(config, "input.name"), input_shape=input_shape,  # type: ignore[arg-type]
        output_name=_field(config, "output.name"), output_shape=output_shape, labels=tuple(labels),
        preprocessing=preprocessing, batching=batching, architecture=str(config.get("architecture") or ""),
        spec=str(config.get("spec") or ""), fully_convolutional=bool(config.get("fully_convolutional", False)))


def read_spec(model_dir: Path) -> ModelSpec:
    """The checked config.json of one model directory."""
    return spec_from_config(read_config(model_dir), model_dir.name)


def model_dirs(repo: Path) -> list[Path]:
    """Every model directory of the repository (named like a model; hidden entries skipped), sorted."""
    repo = Path(repo)
    if not repo.is_dir():
        raise RepositoryError(f"model repository {repo}: not a directory")
    return sorted(p for p in repo.iterdir() if p.is_dir() and MODEL_NAME.match(p.name))


def versions(model_dir: Path) -> list[int]:
    """The versions of a model (directories holding a model.onnx), ascending."""
    return list_versions(model_dir)
