"""What every data set becomes for training: a ``Split`` of uint8 images plus the normalisation.

A loader (``training.digits``, ``training.fashion``) returns uint8 gray images (N, H, W) shaped like
what a client sends, and the ``preprocessing`` block that the model's config.json records
(DESIGN.md): the server decodes a client's image, converts it to gray, resizes it and normalises
it with the same block, so a test image saved as a PNG reaches the network as exactly the tensor
it was tested on. The validation part is carved from the training images; the test part is
only evaluated once, at the end of training.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

EMPTY_IMAGES = np.zeros((0, 1, 1), dtype=np.uint8)
EMPTY_LABELS = np.zeros((0,), dtype=np.int64)


@dataclass(frozen=True)
class Split:
    """uint8 images (N, H, W) and int64 labels for training, validation and test, plus the normalisation.

    ``test_index`` holds the positions of the test images in the source data set, so a test image
    can be traced back to it.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    test_index: np.ndarray
    preprocessing: dict
    labels: list[str] = field(default_factory=lambda: [str(d) for d in range(10)])
    val_images: np.ndarray = field(default_factory=lambda: EMPTY_IMAGES)
    val_labels: np.ndarray = field(default_factory=lambda: EMPTY_LABELS)

    @property
    def x_train(self) -> np.ndarray:
        return normalize(self.train_images, self.preprocessing)

    @property
    def x_val(self) -> np.ndarray:
        return normalize(self.val_images, self.preprocessing)

    @property
    def x_test(self) -> np.ndarray:
        return normalize(self.test_images, self.preprocessing)

    def with_validation(self, fraction: float, seed: int = 0) -> "Split":
        """A copy whose validation part is a stratified ``fraction`` of the training images (removed from them)."""
        from sklearn.model_selection import train_test_split

        if not 0.0 < fraction < 1.0:
            raise ValueError(f"validation fraction must lie strictly between 0 and 1, got {fraction!r}")
        index = np.arange(len(self.train_labels))
        keep, val = train_test_split(index, test_size=fraction, stratify=self.train_labels, random_state=seed, shuffle=True)
        keep, val = np.sort(keep), np.sort(val)
        return dataclasses.replace(
            self, train_images=self.train_images[keep], train_labels=self.train_labels[keep],
            val_images=self.train_images[val], val_labels=self.train_labels[val],
        )

    def subset(self, train: int | None = None, test: int | None = None) -> "Split":
        """The first ``train`` training and ``test`` test images (all when None): quick runs and tests."""
        return dataclasses.replace(
            self, train_images=self.train_images[:train], train_labels=self.train_labels[:train],
            test_images=self.test_images[:test], test_labels=self.test_labels[:test], test_index=self.test_index[:test],
        )


def normalize(images: np.ndarray, preprocessing: dict) -> np.ndarray:
    """uint8 gray (N, H, W) -> float32 (N, 1, H, W): ``(pixel * scale - mean) / std`` (DESIGN.md)."""
    x = images.astype(np.float32)[:, None] * np.float32(preprocessing["scale"])  # (N, 1, H, W)
    mean = np.float32(preprocessing["mean"][0])
    std = np.float32(preprocessing["std"][0])
    return (x - mean) / std


def fit_preprocessing(images: np.ndarray, size: tuple[int, int]) -> dict:
    """The config.json preprocessing block, with mean and std measured on the (training) images."""
    scale = 1.0 / 255.0
    pixels = images.astype(np.float64) * scale
    return {
        "color": "gray",
        "resize": [int(size[0]), int(size[1])],
        "scale": scale,
        "mean": [round(float(pixels.mean()), 6)],
        "std": [round(float(pixels.std()), 6)],
    }


def random_shift(x: np.ndarray, max_shift: int, rng: np.random.Generator, fill: float) -> np.ndarray:
    """Translate each image of an (N, C, H, W) batch by up to ``max_shift`` pixels in each direction,
    filling the uncovered border with ``fill`` (the normalised background); a training augmentation."""
    if max_shift <= 0:
        return x
    n, c, h, w = x.shape
    m = max_shift
    padded = np.full((n, c, h + 2 * m, w + 2 * m), fill, dtype=x.dtype)  # (N, C, H+2m, W+2m)
    padded[:, :, m : m + h, m : m + w] = x
    dy, dx = rng.integers(0, 2 * m + 1, size=(2, n))
    rows = dy[:, None] + np.arange(h)  # (N, H)
    cols = dx[:, None] + np.arange(w)  # (N, W)
    return padded[np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]


def random_flip(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mirror a random half of an (N, C, H, W) batch left to right: clothes look the same mirrored."""
    flip = rng.random(len(x)) < 0.5
    out = x.copy()
    out[flip] = x[flip, :, :, ::-1]
    return out
