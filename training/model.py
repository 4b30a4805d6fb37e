"""From an architecture and a dataset to a trained model version in the repository.

Used by ``python -m training train`` and by the default repository (``digits-lenet5``). The model's
config.json records the dataset's labels and the preprocessing its images went through, so the
server turns a client's PNG into exactly the tensor the network was trained on.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from exporter.architectures import ModelDefinition, resolve
from exporter.build import export_to_repository

from .data import Split
from .datasets import load_dataset
from .train import TrainConfig, TrainResult, confusion_matrix, format_confusion, train, train_metadata

DATA_SEED = 0  # the train/validation/test split stays fixed whatever the training seed, so "held-out" means one set
TEST_FRACTION = 0.2  # of data sets without an official test set (digits)
VAL_FRACTION = 1 / 12  # of the training images: 5,000 of Fashion-MNIST's 60,000


def dataset_for(definition: ModelDefinition, data: str, data_seed: int = DATA_SEED) -> Split:
    """The dataset at the network's input size; an error if the network cannot take it."""
    c, h, w = definition.network.input_shape
    if c != 1:
        raise ValueError(f"--data {data}: gray (1-channel) images, but {definition.network.name!r} takes input "
                         f"(C, H, W) = {(c, h, w)}; expected C = 1")
    split = load_dataset(data, (h, w), seed=data_seed, test_fraction=TEST_FRACTION).with_validation(VAL_FRACTION, data_seed)
    if definition.network.num_classes != len(split.labels):
        raise ValueError(f"--data {data}: {len(split.labels)} classes, but {definition.network.name!r} has "
                         f"{definition.network.num_classes} class scores; expected {len(split.labels)}")
    return split


def epoch_line(stats, epochs: int) -> str:
    return (f"epoch {stats.epoch:>{len(str(epochs))}}/{epochs}  loss {stats.loss:.4f}  "
            f"train acc {stats.train_accuracy:.4f}  val loss {stats.val_loss:.4f}  val acc {stats.val_accuracy:.4f}  "
            f"lr {stats.lr:.2e}  {stats.train_seconds:.1f}s  {stats.images_per_second:.0f} img/s")


def train_model(arch_or_spec: str, repo: str | Path, *, data: str = "digits", name: str | None = None,
                config: TrainConfig = TrainConfig(), version: int | None = None, overwrite: bool = False,
                progress: bool = True, log: Callable[[str], None] = print, train_subset: int | None = None,
                weights_out: str | Path | None = None) -> tuple[Path, TrainResult]:
    """Train ``arch_or_spec`` on ``data`` and write it as a version of ``name`` (default ``<data>-<arch>``).

    ``config.seed`` fixes the initialization and the training order; the data split has its own fixed
    seed. The version's metadata.json records the test accuracy, the training settings and the split.
    Logs one line per epoch, the confusion matrix on the test set, and where the model went.
    ``train_subset`` trains on the first N training images (quick runs); ``weights_out`` also writes
    the parameters as a checked float16 file (``training.weights``) and serves those rounded values.
    """
    is_spec = arch_or_spec.strip().upper().startswith("INPUT")
    if name is None:
        if is_spec:
            raise ValueError("--name is required when training a spec")
        name = f"{data}-{arch_or_spec}"
    definition = resolve(arch_or_spec, name)
    split = dataset_for(definition, data)
    if train_subset is not None:
        split = split.subset(train=train_subset)
    definition = dataclasses.replace(definition, labels=list(split.labels), preprocessing=dict(split.preprocessing))
    params = definition.network.init_params(config.seed)
    result = train(definition.network, params, split, config, progress=progress,
                   on_epoch=lambda s: log(epoch_line(s, config.epochs)))
    matrix = confusion_matrix(split.test_labels, result.test_predictions, len(split.labels))
    log(f"confusion matrix on the {len(split.test_labels)} test images (rows: true class, columns: predicted):")
    log(format_confusion(matrix, split.labels))
    metadata = train_metadata(config, split, result, data, TEST_FRACTION, DATA_SEED)
    metadata["history"] = [dataclasses.asdict(h) for h in result.history]
    params = result.params
    if weights_out is not None:
        from .train import accuracy
        from .weights import load_weights, rounded, save_weights

        # What is served are the float16-rounded weights: their test accuracy is the one recorded.
        params = rounded(params)
        served_accuracy = accuracy(definition.network, params, split.x_test, split.test_labels)[0]
        metadata = {**metadata, "test_accuracy": round(served_accuracy, 6),
                    "test_accuracy_float32": round(result.test_accuracy, 6)}
        digest = save_weights(weights_out, params, {"architecture": arch_or_spec, "name": name, "labels": list(split.labels),
                                                    "preprocessing": dict(split.preprocessing), **metadata})
        params, _ = load_weights(weights_out, digest)
        log(f"wrote {weights_out} (float16, sha256 {digest}; test accuracy {served_accuracy:.2%} after rounding)")
    path = export_to_repository(repo, definition, params, seed=config.seed, version=version,
                                metadata=metadata, overwrite=overwrite, trained=True)
    log(f"wrote {path} (test accuracy {metadata['test_accuracy']:.2%}, {result.train_seconds:.1f}s of training)")
    return path, result
