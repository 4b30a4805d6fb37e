"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` (Zalando's IDX files), as a ``Split``.

28x28 gray images of a light garment on a black background, 60,000 for training and 10,000 for
test, ten classes. The official test set is the test part; validation is carved from the training
images by the trainer's caller, never from the test set.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .data import Split, fit_preprocessing
from .digits import resize_bilinear
from .idx import IdxError, read_idx

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
DIR_ENV = "FASHION_MNIST_DIR"
FASHION_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000),
}


def data_dir() -> Path:
    """Where the IDX files are: ``$FASHION_MNIST_DIR`` or the Debian package's directory."""
    return Path(os.environ.get(DIR_ENV) or DEFAULT_DIR)


def load_part(part: str, directory: str | Path | None = None, count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 28, 28) and int64 labels of ``part`` ("train" or "test").

    ``count`` pins the number of images (60,000 or 10,000 for the real files; None accepts any),
    and the image and label files must agree on it.
    """
    directory = Path(directory) if directory is not None else data_dir()
    images_name, labels_name, full = FILES[part]
    images = read_idx(directory / images_name, 3, (count, 28, 28))
    labels = read_idx(directory / labels_name, 1, (len(images),))
    if labels.size and labels.max() >= len(FASHION_LABELS):
        raise IdxError(f"{directory / labels_name}: label {int(labels.max())} out of range 0..{len(FASHION_LABELS) - 1}")
    return images, labels.astype(np.int64)


def load_fashion_split(size: tuple[int, int] = (28, 28), seed: int = 0, test_fraction: float | None = None,
                       directory: str | Path | None = None, strict: bool = True) -> Split:
    """The official train/test parts at ``size`` (resized bilinearly when not 28x28).

    ``seed`` and ``test_fraction`` are accepted for the common loader signature and ignored: the test
    set is Zalando's. ``strict`` requires the full 60,000/10,000 images.
    """
    train_images, train_labels = load_part("train", directory, FILES["train"][2] if strict else None)
    test_images, test_labels = load_part("test", directory, FILES["test"][2] if strict else None)
    if tuple(size) != (28, 28):
        train_images, test_images = resize_bilinear(train_images, size), resize_bilinear(test_images, size)
    return Split(
        train_images=train_images, train_labels=train_labels,
        test_images=test_images, test_labels=test_labels, test_index=np.arange(len(test_labels)),
        preprocessing=fit_preprocessing(train_images, size), labels=list(FASHION_LABELS),
    )
