"""The training data: scikit-learn's bundled handwritten digits, shaped like the images the server sees.

``load_digits()`` ships 1,797 8x8 digits with ink values 0..16 inside scikit-learn (no network).
Each digit becomes what a client would send: an 8-bit grayscale image (ink 0..16 scaled to 0..255,
white ink on black), upscaled to the network's input with Pillow's bilinear filter, then normalised
with the ``preprocessing`` block recorded in the model's config.json (DESIGN.md). The server decodes
a PNG, converts it to gray, resizes it bilinearly and normalises it with the same block, so a held-out
digit saved as a PNG (at 8x8 or already at the input size) reaches the network as exactly the tensor
it was tested on.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

DIGIT_LABELS = [str(d) for d in range(10)]
INK_MAX = 16  # load_digits() counts ink in 0..16


@dataclass(frozen=True)
class Split:
    """A stratified train/test split of uint8 images (N, H, W) and labels, plus the normalisation.

    ``test_index`` holds the positions of the test images in ``load_digits()`` so a held-out digit
    can be traced back to the dataset.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    test_index: np.ndarray
    preprocessing: dict
    labels: list[str] = field(default_factory=lambda: list(DIGIT_LABELS))

    @property
    def x_train(self) -> np.ndarray:
        return normalize(self.train_images, self.preprocessing)

    @property
    def x_test(self) -> np.ndarray:
        return normalize(self.test_images, self.preprocessing)


def digits_uint8() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as uint8 (N, 8, 8) images with 0..255 ink, and their labels 0..9."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / INK_MAX)).astype(np.uint8)
    return images, digits.target.astype(np.int64)


def resize_bilinear(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize uint8 (N, h, w) gray images to (N, H, W) with Pillow's bilinear filter, as the server does."""
    height, width = size
    out = np.empty((len(images), height, width), dtype=np.uint8)
    for i, img in enumerate(images):
        out[i] = np.asarray(Image.fromarray(img).resize((width, height), Image.Resampling.BILINEAR))
    return out


def normalize(images: np.ndarray, preprocessing: dict) -> np.ndarray:
    """uint8 gray (N, H, W) -> float32 (N, 1, H, W): ``(pixel * scale - mean) / std`` (DESIGN.md)."""
    x = images.astype(np.float32)[:, None] * np.float32(preprocessing["scale"])
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


def load_digits_split(size: tuple[int, int] = (32, 32), test_fraction: float = 0.2, seed: int = 0) -> Split:
    """The digits upscaled to ``size``, split stratified by class with a fixed seed.

    The mean and std of the normalisation come from the training images only.
    """
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    if len(size) != 2 or min(size) < 8:
        raise ValueError(f"size must be (height, width) of at least 8x8 (the digits' own size), got {tuple(size)!r}")
    images, labels = digits_uint8()
    index = np.arange(len(labels))
    train_index, test_index = train_test_split(
        index, test_size=test_fraction, stratify=labels, random_state=seed, shuffle=True,
    )
    big = resize_bilinear(images, size)
    return Split(
        train_images=big[train_index],
        train_labels=labels[train_index],
        test_images=big[test_index],
        test_labels=labels[test_index],
        test_index=test_index,
        preprocessing=fit_preprocessing(big[train_index], size),
    )


DATASETS = {"digits": load_digits_split}


def load_dataset(name: str, size: tuple[int, int], seed: int = 0, test_fraction: float = 0.2) -> Split:
    """A dataset by name (the CLI's ``--data``); an unknown name lists the known ones."""
    if name not in DATASETS:
        raise ValueError(f"--data: unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[name](size=size, test_fraction=test_fraction, seed=seed)


def random_shift(x: np.ndarray, max_shift: int, rng: np.random.Generator, fill: float) -> np.ndarray:
    """Translate each image of an (N, C, H, W) batch by up to ``max_shift`` pixels in each direction,
    filling the uncovered border with ``fill`` (the normalised background); a training augmentation."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    m = max_shift
    padded = np.full((n, x.shape[1], h + 2 * m, w + 2 * m), fill, dtype=x.dtype)
    padded[:, :, m : m + h, m : m + w] = x
    dy, dx = rng.integers(0, 2 * m + 1, size=(2, n))
    rows = dy[:, None] + np.arange(h)
    cols = dx[:, None] + np.arange(w)
    return padded[np.arange(n)[:, None, None, None], np.arange(x.shape[1])[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]
