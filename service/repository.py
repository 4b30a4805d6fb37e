"""What the server reads from the model repository: the models present and each one's config.json.

The layout and the file reader are the exporter's (``exporter.repository``, DESIGN.md); this module
turns a config.json, checked against config.json's schema (``exporter.config_schema``), into a
typed ``ModelSpec``, so a broken one is reported once, at load, with the field at fault, and the
request path never looks at raw JSON.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from exporter.config_schema import RepositoryError, batch_settings, check_config, config_get
from exporter.repository import MODEL_NAME, read_config

from .settings import BatchSettings


@dataclass(frozen=True)
class Preprocessing:
    """How an encoded image becomes the network's input (DESIGN.md): decode, convert to ``color``,
    invert (``always``, or ``auto`` when the border is mostly light), resize to ``resize`` (H, W)
    bilinearly, then ``(pixel * scale - mean[c]) / std[c]``."""

    color: str
    resize: tuple[int, int]
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    invert: str = "never"

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
    trained: bool | None = None  # False: random weights; None: config.json does not say

    @property
    def classes(self) -> int:
        return self.output_shape[0]

    def example_shape(self) -> tuple[int, int, int]:
        """A concrete per-image shape: the input shape, with the resize size for variable H and W."""
        c, h, w = self.input_shape
        rh, rw = self.preprocessing.resize
        return c, h if h > 0 else rh, w if w > 0 else rw


def spec_from_config(config: dict, name: str) -> ModelSpec:
    """Check a parsed config.json (for the model directory ``name``) against its schema
    (exporter.config_schema) and type it."""
    check_config(config)
    if config_get(config, "name") not in (None, name):
        raise RepositoryError(f"config.json: name: expected the directory name {name!r}, got {config.get('name')!r}")
    pre = config["preprocessing"]
    preprocessing = Preprocessing(pre["color"], tuple(pre["resize"]), float(pre["scale"]),
                                  tuple(float(v) for v in pre["mean"]), tuple(float(v) for v in pre["std"]),
                                  config_get(config, "preprocessing.invert"))
    batching = batch_settings(config_get(config, "batching"))
    return ModelSpec(
        name=name, input_name=config["input"]["name"], input_shape=tuple(config["input"]["shape"]),
        output_name=config["output"]["name"], output_shape=tuple(config["output"]["shape"]),
        labels=tuple(config["labels"]), preprocessing=preprocessing, batching=batching,
        architecture=config_get(config, "architecture") or "", spec=config_get(config, "spec") or "",
        fully_convolutional=config_get(config, "fully_convolutional"), trained=config_get(config, "trained"))


def read_spec(model_dir: Path) -> ModelSpec:
    """The checked config.json of one model directory; an error names the file by its path."""
    config = read_config(model_dir)
    try:
        return spec_from_config(config, model_dir.name)
    except RepositoryError as exc:  # its message starts with "config.json: "
        raise RepositoryError(f"{model_dir}/{exc}") from None


def model_dirs(repo: Path) -> list[Path]:
    """Every model directory of the repository (named like a model; hidden entries skipped), sorted."""
    repo = Path(repo)
    if not repo.is_dir():
        raise RepositoryError(f"model repository {repo}: not a directory")
    return sorted(p for p in repo.iterdir() if p.is_dir() and MODEL_NAME.match(p.name))
