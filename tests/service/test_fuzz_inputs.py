"""Property-based tests of the decoders (service/inputs.py): random shapes, dtypes and bytes either
decode into exactly the tensor they describe or raise InvalidInput, never anything else."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from tiny_models import tiny_config

from service.errors import InvalidInput
from service.inputs import Fields, decode_image, tensor_from_bytes, tensor_from_values
from service.repository import spec_from_config

SPEC = spec_from_config(tiny_config("tiny"), "tiny")  # (3, 4, 4)
FCN = spec_from_config(tiny_config("fcn", input={"name": "input", "datatype": "FP32", "shape": [3, -1, -1]},
                                   fully_convolutional=True), "fcn")
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

dims = st.one_of(st.integers(-3, 6), st.sampled_from([0, 3, 4, 2 ** 31, 2 ** 62, -(2 ** 63)]))
shapes = st.lists(dims, min_size=0, max_size=6)


def valid_shapes(spec):
    c, h, w = spec.input_shape
    size = st.integers(1, 5)
    return st.tuples(st.integers(1, 3), st.just(c), st.just(h) if h > 0 else size, st.just(w) if w > 0 else size)


@FUZZ
@given(spec=st.sampled_from([SPEC, FCN]), shape=shapes, data=st.binary(max_size=600), reject=st.booleans())
def test_random_shapes_and_bytes_decode_exactly_or_raise_invalid_input(spec, shape, data, reject):
    try:
        x = tensor_from_bytes(data, shape, spec, Fields(), reject)
    except InvalidInput as exc:
        assert str(exc).startswith(("tensor.shape", "tensor.data"))
        return
    assert x.shape == tuple(shape) and x.dtype == np.float32
    assert len(data) == 4 * math.prod(shape)
    np.testing.assert_array_equal(x.view(np.uint8).ravel(), np.frombuffer(data, np.uint8))
    assert not reject or np.isfinite(x).all()


@FUZZ
@given(spec=st.sampled_from([SPEC, FCN]), data=st.data(), reject=st.booleans())
def test_well_shaped_random_bytes_decode_unless_non_finite(spec, data, reject):
    shape = data.draw(valid_shapes(spec))
    raw = data.draw(st.binary(min_size=4 * math.prod(shape), max_size=4 * math.prod(shape)))
    x = np.frombuffer(raw, "<f4").reshape(shape)
    if reject and not np.isfinite(x).all():
        with pytest.raises(InvalidInput, match="tensor.data: expected finite values"):
            tensor_from_bytes(raw, shape, spec, Fields(), reject)
    else:
        np.testing.assert_array_equal(tensor_from_bytes(raw, shape, spec, Fields(), reject), x)


@FUZZ
@given(shape=shapes, values=st.lists(st.floats(width=32), max_size=120), reject=st.booleans())
def test_typed_values_decode_exactly_or_raise_invalid_input(shape, values, reject):
    fields = Fields("inputs[0].shape", "inputs[0].contents.fp32_contents")
    try:
        x = tensor_from_values(values, shape, SPEC, fields, reject)
    except InvalidInput as exc:
        assert str(exc).startswith(("inputs[0].shape", "inputs[0].contents.fp32_contents"))
        return
    assert x.shape == tuple(shape) and x.dtype == np.float32
    np.testing.assert_array_equal(x.ravel(), np.asarray(values, np.float32))
    assert not reject or np.isfinite(x).all()


def encoded(fmt: str, size=(6, 5), mode="RGB") -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], len(mode)), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels.squeeze(-1) if mode == "L" else pixels, mode).save(buffer, format=fmt)
    return buffer.getvalue()


SEEDS = [encoded("PNG"), encoded("JPEG"), encoded("PNG", (3, 9), "L"), encoded("PNG", (4, 4), "RGBA")]


@st.composite
def mutated_images(draw):
    """A valid PNG or JPEG with bytes flipped, cut, or inserted."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "cut", "insert"]))
        at = draw(st.integers(0, len(data) - 1)) if data else 0
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


@FUZZ
@given(data=st.one_of(st.binary(max_size=300), mutated_images()), max_pixels=st.sampled_from([1, 30, 10_000]))
def test_random_and_corrupted_image_bytes_decode_or_raise_invalid_input(data, max_pixels):
    try:
        x = decode_image(data, SPEC.preprocessing, "images.images[0]", max_pixels)
    except InvalidInput as exc:
        assert str(exc).startswith("images.images[0]: expected")
        return
    assert x.shape == (3, 4, 4) and x.dtype == np.float32 and np.isfinite(x).all()
    with Image.open(io.BytesIO(data)) as image:
        assert image.width * image.height <= max_pixels
