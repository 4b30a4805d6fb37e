"""Training data: scikit-learn's bundled handwritten digits, shaped like the images the server sees.

``load_digits()`` ships 1,797 8x8 digits with ink values 0..16 inside scikit-learn (no network).
Each digit becomes what a client would send: an 8-bit grayscale image (ink 0..16 scaled to 0..255,
white ink on black), upscaled to the network's input with Pillow's bilinear filter, then normalised
with the ``preprocessing`` block recorded in the model's config.json (DESIGN.md). The server decodes
a PNG, converts it to gray, resizes it bilinearly and normalises it with the same block, so a held-out
digit saved as a PNG (at 8x8 or already at the input size) reaches the network as exactly the tensor
it was tested on.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from .data import Split, fit_preprocessing

DIGIT_LABELS = [str(d) for d in range(10)]
INK_MAX = 16  # load_digits() counts ink in 0..16


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
