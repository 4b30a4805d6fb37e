"""From an architecture and a dataset to a trained model version in the repository.

Used by ``python -m exporter train`` and by the default repository (``digits-lenet5``). The model's
config.json records the dataset's labels and the preprocessing its images went through, so the
server turns a client's PNG into exactly the tensor the network was trained on.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from .architectures import ModelDefinition, resolve
from .build import export_to_repository
from .data import Split, load_dataset
from .train import TrainConfig, TrainResult, confusion_matrix, format_confusion, train, train_metadata

DATA_SEED = 0  # the train/test split stays fixed whatever the training seed, so "held-out" means one set
TEST_FRACTION = 0.2


def dataset_for(definition: ModelDefinition, data: str, data_seed: int = DATA_SEED) -> Split:
    """The dataset at the network's input size; an error if the network cannot take it."""
    c, h, w = definition.network.input_shape
    if c != 1:
        raise ValueError(f"--data {data}: gray (1-channel) images, but {definition.network.name!r} takes input "
                         f"(C, H, W) = {(c, h, w)}; expected C = 1")
    split = load_dataset(data, (h, w), seed=data_seed, test_fraction=TEST_FRACTION)
    if definition.network.num_classes != len(split.labels):
        raise ValueError(f"--data {data}: {len(split.labels)} classes, but {definition.network.name!r} has "
                         f"{definition.network.num_classes} class scores; expected {len(split.labels)}")
    return split


def epoch_line(stats, epochs: int) -> str:
    return (f"epoch {stats.epoch:>{len(str(epochs))}}/{epochs}  loss {stats.loss:.4f}  "
            f"train acc {stats.train_accuracy:.4f}  test acc {stats.test_accuracy:.4f}  "
            f"lr {stats.lr:.2e}  {stats.train_seconds:.1f}s")


def train_model(arch_or_spec: str, repo: str | Path, *, data: str = "digits", name: str | None = None,
                config: TrainConfig = TrainConfig(), version: int | None = None, overwrite: bool = False,
                progress: bool = True, log: Callable[[str], None] = print) -> tuple[Path, TrainResult]:
    """Train ``arch_or_spec`` on ``data`` and write it as a version of ``name`` (default ``<data>-<arch>``).

    ``config.seed`` fixes the initialization and the training order; the data split has its own fixed
    seed. The version's metadata.json records the test accuracy, the training settings and the split.
    Logs one line per epoch, the confusion matrix on the test set, and where the model went.
    """
    is_spec = arch_or_spec.strip().upper().startswith("INPUT")
    if name is None:
        if is_spec:
            raise ValueError("--name is required when training a spec")
        name = f"{data}-{arch_or_spec}"
    definition = resolve(arch_or_spec, name)
    split = dataset_for(definition, data)
    definition = dataclasses.replace(definition, labels=list(split.labels), preprocessing=dict(split.preprocessing))
    params = definition.network.init_params(config.seed)
    result = train(definition.network, params, split, config, progress=progress,
                   on_epoch=lambda s: log(epoch_line(s, config.epochs)))
    matrix = confusion_matrix(split.test_labels, result.test_predictions, len(split.labels))
    log(f"confusion matrix on the {len(split.test_labels)} test images (rows: true class, columns: predicted):")
    log(format_confusion(matrix, split.labels))
    metadata = train_metadata(config, split, result, data, TEST_FRACTION, DATA_SEED)
    path = export_to_repository(repo, definition, result.params, seed=config.seed, version=version,
                                metadata=metadata, overwrite=overwrite)
    log(f"wrote {path} (test accuracy {result.test_accuracy:.2%}, {result.train_seconds:.1f}s of training)")
    return path, result
