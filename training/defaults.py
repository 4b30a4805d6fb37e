"""The default model repository the server starts with: a list of models, each with how to build it.

``ensure_defaults`` builds only what is missing, so it is idempotent and quick when all are there.
``fashion`` is built from trained weights shipped in the repository (``training/weights/``,
float16, SHA-256 pinned here): its full training takes longer on a 2-core machine than a fresh
start may, while building it from the file takes seconds. ``digits-lenet5`` trains in seconds and
is trained on the spot. ``cifar-tiny`` and ``cifar-vgg`` carry random weights, for benchmarks.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from exporter.architectures import resolve
from exporter.build import build, export_to_repository
from exporter.repository import MODEL, model_dir

from .model import train_model
from .samples import write_samples
from .weights import load_weights

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
FASHION_WEIGHTS = WEIGHTS_DIR / "fashion.npz"
# The digest the training command printed for the shipped file (docs/BENCHMARKS.md has the command).
FASHION_SHA256 = "92d80608563e3b1790f7c707d382e742e997c3935c6e16e63aee54b7295f3bfd"


@dataclass(frozen=True)
class DefaultModel:
    name: str
    build: Callable[[Path], Path]  # writes ``version`` of the model into the repository given (replacing it)
    version: int = 1
    weights_sha256: str | None = None  # built from a shipped file: a version built from another is stale

    def present(self, repo: Path) -> bool:
        return (model_dir(repo, self.name) / str(self.version) / MODEL).is_file()

    def stale(self, repo: Path) -> str | None:
        """Why the present version must be built again (it was built from other shipped weights), or None."""
        if self.weights_sha256 is None:
            return None
        metadata = model_dir(repo, self.name) / str(self.version) / "metadata.json"
        try:
            built_from = json.loads(metadata.read_text()).get("weights_sha256")
        except (OSError, ValueError):
            built_from = None
        if built_from == self.weights_sha256:
            return None
        return f"built from weights {str(built_from)[:12]}, the shipped file is {self.weights_sha256[:12]}"


def train_digits_lenet5(repo: Path) -> Path:
    """LeNet-5 trained on the scikit-learn digits with the default recipe (seconds in NumPy)."""
    return train_model("lenet5", repo, name="digits-lenet5", version=1, progress=False)[0]


def fashion_from_weights(repo: Path, weights: Path = FASHION_WEIGHTS, sha256: str | None = None) -> Path:
    """The ``fashion`` model from the shipped, checked weights file and its sidecar (labels, preprocessing)."""
    params, info = load_weights(weights, sha256 or FASHION_SHA256)
    # Fashion-MNIST is a light garment on black; "auto" inverts a picture with a light border (a product photo).
    definition = dataclasses.replace(resolve(info["architecture"], "fashion"), labels=list(info["labels"]),
                                     preprocessing={**info["preprocessing"], "invert": "auto"})
    keep = ("test_accuracy", "test_accuracy_float32", "val_accuracy", "best_epoch", "train_seconds", "training", "data", "history")
    metadata = {k: info[k] for k in keep if k in info} | {"weights_sha256": info["sha256"]}
    return export_to_repository(repo, definition, params, seed=info["training"]["seed"], version=1, metadata=metadata,
                                trained=True, overwrite=True)


DEFAULT_MODELS: list[DefaultModel] = [
    DefaultModel("fashion", fashion_from_weights, weights_sha256=FASHION_SHA256),
    DefaultModel("digits-lenet5", train_digits_lenet5),
    DefaultModel("cifar-tiny", lambda repo: build("cifar-tiny", repo, seed=0, version=1)),
    DefaultModel("cifar-vgg", lambda repo: build("cifar-vgg", repo, seed=0, version=1)),
]


def ensure_defaults(repo: str | Path, models: list[DefaultModel] | None = None,
                    log: Callable[[str], None] = print) -> list[str]:
    """Build each default model that is missing (or was built from weights other than the shipped
    file's, so an updated checkout serves its own weights), with a progress bar over the models,
    then the page's sample images (training.samples) where missing; returns the names built."""
    from tqdm.auto import tqdm

    repo = Path(repo)
    built = []
    models = DEFAULT_MODELS if models is None else models
    with tqdm(models, desc="default models", unit="model", disable=None) as bar:
        for model in bar:
            bar.set_postfix_str(model.name)
            why = model.stale(repo) if model.present(repo) else "missing"
            if why is None:
                log(f"{model.name}: version {model.version} present")
                continue
            path = model.build(repo)
            log(f"{model.name}: built {path}" + ("" if why == "missing" else f" again ({why})"))
            built.append(model.name)
    write_samples(repo, log)
    return built
