"""The shared input path: raw and typed tensors, encoded images, each error naming its field."""
from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image
from tiny_models import tiny_config

from bench import image_modes
from service.errors import InvalidInput
from service.images import MODES
from service.inputs import Fields, decode_image, decode_images, tensor_from_bytes, tensor_from_values
from service.repository import Preprocessing, spec_from_config

SPEC = spec_from_config(tiny_config("tiny"), "tiny")  # input (3, 4, 4), rgb, resize 4x4
FCN = spec_from_config(tiny_config("fcn", input={"name": "input", "datatype": "FP32", "shape": [3, -1, -1]},
                                   fully_convolutional=True), "fcn")


def encode(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def test_raw_tensor_round_trips_little_endian_float32():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(tensor_from_bytes(x.astype("<f4").tobytes(), [2, 3, 4, 4], SPEC), x)
    y = tensor_from_values(x.ravel().tolist(), (2, 3, 4, 4), SPEC, Fields("inputs[0].shape", "inputs[0].contents"))
    np.testing.assert_array_equal(y, x)


def test_variable_dimensions_accept_any_positive_size():
    x = np.ones((1, 3, 9, 7), dtype=np.float32)
    assert tensor_from_bytes(x.tobytes(), x.shape, FCN).shape == (1, 3, 9, 7)
    with pytest.raises(InvalidInput, match=r"expected \[N, 3, \?, \?\], received \[1, 3, 0, 7\]"):
        tensor_from_bytes(b"", (1, 3, 0, 7), FCN)


@pytest.mark.parametrize("shape, data, message", [
    ((3, 4, 4), b"", r"tensor.shape: expected \[N, 3, 4, 4\] \(4 dimensions, NCHW\), received \[3, 4, 4\] \(3 dimensions\)"),
    ((0, 3, 4, 4), b"", r"tensor.shape\[0\]: expected a batch of at least 1 image, received 0"),
    ((1, 1, 4, 4), b"", r"received \[1, 1, 4, 4\] \(dimension 1 differs\)"),
    ((1, 3, 4, 5), b"", r"received \[1, 3, 4, 5\] \(dimension 3 differs\)"),
    ((2, 3, 4, 4), b"\0" * 10, r"tensor.data: expected 384 bytes \(4-byte float32 x 2 x 3 x 4 x 4\), received 10"),
])
def test_bad_tensors_name_field_expected_and_received(shape, data, message):
    with pytest.raises(InvalidInput, match=message):
        tensor_from_bytes(data, shape, SPEC)


def test_typed_values_must_match_the_shape():
    with pytest.raises(InvalidInput, match=r"inputs\[0\].contents: expected 48 values for shape \[1, 3, 4, 4\], received 47"):
        tensor_from_values([0.0] * 47, [1, 3, 4, 4], SPEC, Fields("inputs[0].shape", "inputs[0].contents"))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected_unless_allowed(bad):
    x = np.zeros((2, 3, 4, 4), dtype=np.float32)
    x[1, 0, 2, 3] = bad
    with pytest.raises(InvalidInput, match=r"tensor.data: expected finite values .* at index \[1, 0, 2, 3\] \(image 1\)"):
        tensor_from_bytes(x.tobytes(), x.shape, SPEC)
    assert not np.isfinite(tensor_from_bytes(x.tobytes(), x.shape, SPEC, reject_non_finite=False)).all()


def test_image_normalization_follows_the_config():
    pixels = np.random.default_rng(1).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    x = decode_image(encode(pixels), SPEC.preprocessing, "images[0]", 10_000)
    expected = (pixels.astype(np.float64) / 255 - 0.5) / 0.25
    np.testing.assert_allclose(x, expected.transpose(2, 0, 1), rtol=1e-6, atol=1e-6)


def test_gray_and_alpha_images_become_rgb_and_any_size_is_resized():
    gray = np.random.default_rng(2).integers(0, 256, (4, 4), dtype=np.uint8)
    x = decode_image(encode(gray), SPEC.preprocessing, "f", 10_000)
    np.testing.assert_allclose(x, np.repeat(((gray / 255 - 0.5) / 0.25)[None], 3, axis=0), atol=1e-6)
    rgba = np.random.default_rng(3).integers(0, 256, (4, 4, 4), dtype=np.uint8)
    x = decode_image(encode(rgba), SPEC.preprocessing, "f", 10_000)
    np.testing.assert_allclose(x, ((rgba[..., :3] / 255 - 0.5) / 0.25).transpose(2, 0, 1), atol=1e-6)
    big = np.full((30, 50, 3), 200, dtype=np.uint8)
    for fmt in ("PNG", "JPEG"):
        x = decode_image(encode(big, fmt), SPEC.preprocessing, "f", 10_000)
        assert x.shape == (3, 4, 4) and np.allclose(x, (200 / 255 - 0.5) / 0.25, atol=0.05)


def test_undecodable_oversized_and_other_format_images_are_refused():
    with pytest.raises(InvalidInput, match=r"images\[2\]: expected a PNG or JPEG image, received 5 bytes that do not decode"):
        decode_image(b"hello", SPEC.preprocessing, "images[2]", 10_000)
    with pytest.raises(InvalidInput, match=r"received 0 bytes"):
        decode_image(b"", SPEC.preprocessing, "f", 10_000)
    noise = np.random.default_rng(4).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    truncated = encode(noise)[:200]
    with pytest.raises(InvalidInput, match="do not decode"):
        decode_image(truncated, SPEC.preprocessing, "f", 10_000)
    with pytest.raises(InvalidInput, match=r"expected at most 100 pixels, received a 20x10 image \(200 pixels\)"):
        decode_image(encode(np.zeros((10, 20), dtype=np.uint8)), SPEC.preprocessing, "f", 100)
    gif = io.BytesIO()
    Image.new("RGB", (4, 4)).save(gif, format="GIF")
    with pytest.raises(InvalidInput, match="PNG or JPEG"):
        decode_image(gif.getvalue(), SPEC.preprocessing, "f", 10_000)


def test_decode_images_batches_and_bounds_the_count():
    files = [encode(np.full((4, 4, 3), v, dtype=np.uint8)) for v in (0, 255)]
    x = decode_images(files, SPEC, "images.images", 10_000, max_images=8)
    assert x.shape == (2, 3, 4, 4) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0, 0, 0], [-2.0, 2.0], atol=1e-6)
    with pytest.raises(InvalidInput, match="images.images: expected at least 1 image, received 0"):
        decode_images([], SPEC, "images.images", 10_000, max_images=8)
    with pytest.raises(InvalidInput, match="expected at most max_batch_size=1 images, received 2"):
        decode_images(files, SPEC, "images.images", 10_000, max_images=1)


GRAY_LEVELS = Preprocessing(color="gray", resize=(32, 32), scale=1.0, mean=(0.0,), std=(1.0,))


@pytest.mark.parametrize("case", image_modes.cases(), ids=lambda case: case.id)
def test_every_image_mode_is_converted_like_its_8bit_rgb_twin_or_refused_naming_it(case):
    assert image_modes.opened_mode(case) == case.mode  # the case is the mode it claims to be
    if case.twin is None:
        with pytest.raises(InvalidInput, match=r"images\[0\]: expected an image of mode .*received one of mode "
                                               + re.escape(repr(case.mode))):
            image_modes.decode(case)
        return
    for pre, slack in ((image_modes.LEVELS, 0.0), (GRAY_LEVELS, 1.0)):  # slack: the luma's own rounding
        x, twin = image_modes.decode(case, pre), image_modes.twin_tensor(case, pre)
        assert x.shape == twin.shape and x.dtype == np.float32
        assert np.abs(x - twin).max() <= case.tolerance + slack, (case.id, pre.color, np.abs(x - twin).max())


def test_mid_grey_in_16_bits_stays_mid_grey():
    """The probe's finding: Pillow's own conversion clipped 16-bit gray at 255, so mid-grey became white."""
    data = image_modes.raw_png(np.full((2, 2), 32896, dtype=np.uint16), 16, 0)  # 32896 / 257 = 128
    x = decode_image(data, image_modes.LEVELS, "images[0]", 10_000)
    np.testing.assert_array_equal(x, np.full((3, 32, 32), 128, dtype=np.float32))


def test_every_mode_pillow_knows_is_in_the_table():
    assert set(Image.MODES) <= set(MODES), set(Image.MODES) - set(MODES)
    assert {case.mode for case in image_modes.cases()} == set(MODES)


def test_the_mode_table_in_reliability_md_is_the_one_the_code_gives():
    doc = image_modes.DOC.read_text()
    written = doc.split(image_modes.BEGIN, 1)[1].split(image_modes.END, 1)[0].strip()
    generated, differs = image_modes.text()
    assert differs == 0
    assert written == generated, "docs/RELIABILITY.md's mode table is stale: run python -m bench.image_modes"
