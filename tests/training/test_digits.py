"""The digits split: stratified, seeded, and the same tensor whether built here or decoded from a PNG."""
import io

import numpy as np
import pytest
from PIL import Image

from training.data import normalize
from training.datasets import load_dataset
from training.digits import digits_uint8, load_digits_split, resize_bilinear


@pytest.fixture(scope="module")
def split():
    return load_digits_split(size=(32, 32), test_fraction=0.2, seed=0)


def test_split_is_stratified_disjoint_and_complete(split):
    _, labels = digits_uint8()
    per_class = np.bincount(labels, minlength=10)
    test_per_class = np.bincount(split.test_labels, minlength=10)
    assert np.all(np.abs(test_per_class - 0.2 * per_class) <= 1), (test_per_class, per_class)
    assert len(split.train_labels) + len(split.test_labels) == len(labels) == 1797
    np.testing.assert_array_equal(labels[split.test_index], split.test_labels)
    train_index = np.setdiff1d(np.arange(len(labels)), split.test_index)
    np.testing.assert_array_equal(np.sort(np.bincount(split.train_labels)), np.sort(np.bincount(labels[train_index])))


def test_split_is_fixed_by_the_seed(split):
    again = load_digits_split(seed=0)
    other = load_digits_split(seed=1)
    np.testing.assert_array_equal(again.test_index, split.test_index)
    np.testing.assert_array_equal(again.test_images, split.test_images)
    assert not np.array_equal(np.sort(other.test_index), np.sort(split.test_index))


def test_preprocessing_normalises_the_training_images(split):
    p = split.preprocessing
    assert p["color"] == "gray" and p["resize"] == [32, 32] and p["scale"] == 1 / 255
    x = split.x_train
    assert x.shape == (1437, 1, 32, 32) and x.dtype == np.float32
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-3
    assert split.x_test.shape == (360, 1, 32, 32)


def test_upscale_is_bilinear_with_half_pixel_centres():
    # Independent bilinear: output pixel i samples input coordinate (i + 0.5) / 4 - 0.5, edges clamped.
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (8, 8)).astype(np.uint8)
    coord = np.clip((np.arange(32) + 0.5) / 4 - 0.5, 0, 7)
    lo = np.floor(coord).astype(int)
    hi = np.minimum(lo + 1, 7)
    t = coord - lo
    rows = img[lo].astype(float) * (1 - t)[:, None] + img[hi].astype(float) * t[:, None]
    expect = rows[:, lo] * (1 - t) + rows[:, hi] * t
    got = resize_bilinear(img[None], (32, 32))[0].astype(float)
    assert np.max(np.abs(got - expect)) <= 1.0  # Pillow rounds to uint8 (fixed-point weights)


@pytest.mark.parametrize("png_size", [8, 32])
def test_a_png_decoded_like_the_server_gives_the_training_tensor(split, png_size):
    # A held-out digit saved as a PNG (8x8 original or 32x32 upscaled), then decoded, converted to gray,
    # resized bilinearly and normalised as DESIGN.md says the server does, equals the test tensor exactly.
    images, _ = digits_uint8()
    k = 7
    src = images[split.test_index[k]] if png_size == 8 else split.test_images[k]
    buf = io.BytesIO()
    Image.fromarray(src).save(buf, format="PNG")
    decoded = Image.open(io.BytesIO(buf.getvalue())).convert("L").resize((32, 32), Image.Resampling.BILINEAR)
    x = normalize(np.asarray(decoded)[None], split.preprocessing)
    np.testing.assert_array_equal(x, split.x_test[k : k + 1])


def test_unknown_dataset_and_bad_sizes_are_named():
    with pytest.raises(ValueError, match=r"--data: unknown dataset 'mnist'.*\['digits', 'fashion-mnist'\]"):
        load_dataset("mnist", (32, 32))
    with pytest.raises(ValueError, match=r"test_fraction.*1.5"):
        load_digits_split(test_fraction=1.5)
    with pytest.raises(ValueError, match=r"size.*\(4, 4\)"):
        load_digits_split(size=(4, 4))
