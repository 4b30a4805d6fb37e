"""``python -m exporter import``: a user's ONNX model into the repository, checked against NumPy.

The import maps the graph onto the NumPy layers (exporter/onnx_import.py), runs seeded inputs
through both the NumPy network and onnxruntime on the user's file, and writes the repository entry
only when they agree: config.json, and the version's model.onnx (the user's file, byte for byte),
graph.json, weights.npz and metadata.json (source digest, producer, opset, measured agreement).
"""
from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from . import EXPORTER_VERSION
from .architectures import generic_preprocessing, imagenet_preprocessing
from .graph import Network, Params
from .onnx_import import to_network
from .config_schema import model_config
from .repository import check_writable, write_version

AGREEMENT_IMAGES = 4
AGREEMENT_SEED = 0
TOLERANCE = 1e-4
"""The largest |NumPy - onnxruntime| score difference accepted, as a fraction of the score range
(max - min of onnxruntime's scores over the seeded inputs): float32 sums in another order differ
by about 1e-6 of the range through a 50-layer net; an error in a layer's mapping shows as 1e-2 or more."""
PRESETS = ("imagenet", "none")

Progress = Callable[[str], None]


class ImportDisagrees(ValueError):
    """NumPy and onnxruntime give scores further apart than the tolerance."""


@dataclass(frozen=True)
class Agreement:
    """How closely the NumPy network reproduces onnxruntime's scores on seeded standard-normal inputs."""

    images: int
    seed: int
    max_abs_diff: float
    score_range: float
    relative: float
    tolerance: float

    @property
    def holds(self) -> bool:
        return self.relative <= self.tolerance

    def __str__(self) -> str:
        verdict = "agree" if self.holds else "DISAGREE"
        return (f"NumPy and onnxruntime {verdict}: max |difference| {self.max_abs_diff:.3g} over {self.images} seeded "
                f"inputs = {self.relative:.3g} of the score range {self.score_range:.4g} (tolerance {self.tolerance:g})")


def measure_agreement(onnx_bytes: bytes, input_name: str, output_name: str, network: Network, params: Params,
                      images: int = AGREEMENT_IMAGES, seed: int = AGREEMENT_SEED, tolerance: float = TOLERANCE) -> Agreement:
    """Both forward passes on the same seeded batch; the difference relative to the score range."""
    x = np.random.default_rng(seed).standard_normal((images, *network.input_shape)).astype(np.float32)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    expected = session.run([output_name], {input_name: x})[0]
    got = network.predict(x, params)
    diff = float(np.max(np.abs(got.astype(np.float64) - expected))) if got.shape == expected.shape else float("inf")
    spread = float(np.max(expected) - np.min(expected))
    return Agreement(images, seed, diff, spread, diff / spread if spread > 0 else diff, tolerance)


def read_preprocessing(choice: str, input_shape: tuple[int, int, int]) -> dict:
    """A preset (imagenet: ImageNet mean/std at the model's input size; none: pixels scaled to [0, 1])
    or a JSON file whose object is laid over ``none`` (config.json checks the result)."""
    c, h, w = input_shape
    if c not in (1, 3):
        raise ValueError(f"the model takes {c} input channels; a served model takes 1 (gray) or 3 (rgb)")
    if choice == "imagenet":
        if c != 3:
            raise ValueError(f"--preprocessing imagenet: the model takes {c} channel(s), ImageNet normalisation needs 3")
        return {**imagenet_preprocessing(h), "resize": [h, w]}
    base = generic_preprocessing(input_shape)
    if choice == "none":
        return base
    path = Path(choice)
    try:
        given = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"--preprocessing {choice}: not {' or '.join(PRESETS)} and not a readable JSON file ({e})") from e
    if not isinstance(given, dict):
        raise ValueError(f"--preprocessing {choice}: expected a JSON object, got {type(given).__name__}")
    return {**base, **given}


def read_labels(path: Path | None, classes: int) -> list[str]:
    """One label per line (blank lines skipped), or a JSON list; ``class_<i>`` without a file."""
    if path is None:
        return [f"class_{i}" for i in range(classes)]
    text = Path(path).read_text()
    labels = json.loads(text) if text.lstrip().startswith("[") else [line.strip() for line in text.splitlines() if line.strip()]
    if len(labels) != classes or not all(isinstance(label, str) for label in labels):
        raise ValueError(f"--labels {path}: expected {classes} labels (the model's output size), got {len(labels)}")
    return labels


def source_info(path: Path, data: bytes, model: onnx.ModelProto) -> dict:
    return {
        "file": path.name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
        "producer_name": model.producer_name, "producer_version": model.producer_version,
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
        "ir_version": model.ir_version,
    }


def import_model(source: str | Path, repo: str | Path, *, name: str, labels: Path | None = None,
                 preprocessing: str = "imagenet", version: int | None = None, overwrite: bool = False,
                 progress: Progress | None = None) -> tuple[Path, Agreement]:
    """Import ``source`` as model ``name``; returns the version directory and the measured agreement.

    Raises ImportRefused (the graph cannot be mapped) or ImportDisagrees (it maps, but the scores
    differ beyond the tolerance) before anything is written.
    """
    step = progress or (lambda _: None)
    source = Path(source)
    data = source.read_bytes()
    try:
        model = onnx.load_from_string(data)
    except Exception as e:  # protobuf's DecodeError and friends
        raise ValueError(f"{source}: not an ONNX model ({e})") from e
    step("mapping the graph onto the NumPy layers")
    network, params, graph = to_network(model, name, data)
    config = model_config(network, architecture="imported", spec=None, labels=read_labels(labels, network.num_classes),
                          preprocessing=read_preprocessing(preprocessing, network.input_shape), trained=None,
                          input_name=graph.input_name, output_name=graph.output_name)
    check_writable(repo, config, version, overwrite)
    step("checking NumPy against onnxruntime")
    agreement = measure_agreement(data, graph.input_name, graph.output_name, network, params)
    step(str(agreement))
    if not agreement.holds:
        raise ImportDisagrees(f"{source}: {agreement}; nothing written")
    metadata = {
        "architecture": "imported", "source": source_info(source, data, model), "agreement": asdict(agreement),
        "exporter_version": EXPORTER_VERSION, "params": network.num_params(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    step("writing the repository")
    path = write_version(repo, config, version, onnx_bytes=data, network=network, params=params, metadata=metadata,
                         overwrite=overwrite)
    return path, agreement
