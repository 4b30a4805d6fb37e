"""The page's sample images: one test image per class of each data set a model of the repository
was trained on, written into the repository for the server to hand out.

The server does not import the training package (the runtime image does not have it), so whoever
builds the repository writes them: ``REPO/.samples/<data set>.npz`` (hidden, so no reader takes it
for a model) holds ``images`` (uint8, N x H x W, the model's input size), ``labels`` (int64),
``names`` (the class names) and the split they were drawn from (``size``, ``seed``,
``test_fraction``). A file drawn from another split than the newest trained model's is written
again.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from exporter.repository import CONFIG, SAMPLES, list_versions, read_config

from .datasets import DATASETS, load_dataset

SAMPLE_IMAGES = 10


def trained_splits(repo: Path) -> dict[str, tuple[tuple[int, int], int, float]]:
    """Per data set: the input size, seed and test fraction of the split the first model (by name)
    trained on it used, read from each model's newest metadata.json and its config.json."""
    splits: dict[str, tuple[tuple[int, int], int, float]] = {}
    for model in sorted(p for p in Path(repo).iterdir() if (p / CONFIG).is_file()):
        versions = list_versions(model)
        if not versions:
            continue
        try:
            data = json.loads((model / str(versions[-1]) / "metadata.json").read_text()).get("data")
            resize = read_config(model)["preprocessing"]["resize"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(data, dict) and data.get("name") in DATASETS and data["name"] not in splits:
            splits[data["name"]] = ((int(resize[0]), int(resize[1])), int(data.get("seed", 0)),
                                    float(data.get("test_fraction", 0.2)))
    return splits


def first_of_each_class(dataset: str, size: tuple[int, int], seed: int,
                        fraction: float) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The first test image of each class (up to SAMPLE_IMAGES), sorted by class: uint8 images,
    their labels, the class names."""
    split = load_dataset(dataset, size, seed=seed, test_fraction=fraction)
    picked, seen = [], set()
    for i, y in enumerate(split.test_labels):
        if int(y) not in seen:
            seen.add(int(y))
            picked.append(i)
        if len(picked) == SAMPLE_IMAGES:
            break
    picked.sort(key=lambda i: int(split.test_labels[i]))
    return split.test_images[picked], split.test_labels[picked], list(split.labels)


def _drawn_from(path: Path) -> tuple[tuple[int, int], int, float] | None:
    try:
        with np.load(path, allow_pickle=False) as f:
            return (int(f["size"][0]), int(f["size"][1])), int(f["seed"]), float(f["test_fraction"])
    except (OSError, ValueError, KeyError, IndexError):
        return None


def write_samples(repo: str | Path, log: Callable[[str], None] = print) -> list[str]:
    """Write the sample set of each data set the repository's models were trained on, where it is
    missing or drawn from another split; returns the data sets written. A data set that cannot be
    loaded here is reported and skipped (the page then offers no samples of it)."""
    repo = Path(repo)
    written = []
    for dataset, (size, seed, fraction) in trained_splits(repo).items():
        path = repo / SAMPLES / f"{dataset}.npz"
        if _drawn_from(path) == (size, seed, fraction):
            continue
        try:
            images, labels, names = first_of_each_class(dataset, size, seed, fraction)
        except (OSError, ValueError, ImportError) as exc:
            log(f"samples of {dataset}: not written ({type(exc).__name__}: {exc})")
            continue
        path.parent.mkdir(exist_ok=True)
        staging = path.with_name(f".{path.stem}.tmp-{os.getpid()}.npz")
        np.savez(staging, images=images.astype(np.uint8), labels=labels.astype(np.int64), names=np.array(names),
                 size=np.array(size), seed=np.array(seed), test_fraction=np.array(fraction))
        os.replace(staging, path)
        log(f"samples of {dataset}: wrote {path} ({len(images)} images)")
        written.append(dataset)
    return written
