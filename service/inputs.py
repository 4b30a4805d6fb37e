"""Request inputs to the network's float32 NCHW batch: the one validation and decoding path that
every API uses (raw tensors, typed values, encoded images).

Each check raises InvalidInput with a message naming the field, the expected and the received
value; ``Fields`` carries the field names as the calling API spells them.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InvalidInput
from .images import eight_bit
from .repository import ModelSpec, Preprocessing

IMAGE_FORMATS = ("PNG", "JPEG")
FLOAT32 = np.dtype("<f4")


@dataclass(frozen=True)
class Fields:
    """How the calling API names the parts of a tensor input in its messages."""

    shape: str = "tensor.shape"
    data: str = "tensor.data"


def expected_shape(spec: ModelSpec) -> str:
    return "[N, " + ", ".join("?" if d == -1 else str(d) for d in spec.input_shape) + "]"


def check_shape(shape: Sequence[int], spec: ModelSpec, fields: Fields) -> tuple[int, ...]:
    """The request's tensor shape, checked against the model's [N, C, H, W] (N >= 1)."""
    shape = tuple(map(int, shape))
    if len(shape) == 4 and shape[0] >= 1 and shape[1:] == spec.input_shape:
        return shape  # the common case, checked at once: every dimension as the model fixes it
    if len(shape) != 4:
        raise InvalidInput(f"{fields.shape}: expected {expected_shape(spec)} (4 dimensions, NCHW), "
                           f"received {list(shape)} ({len(shape)} dimensions)")
    if shape[0] < 1:
        raise InvalidInput(f"{fields.shape}[0]: expected a batch of at least 1 image, received {shape[0]}")
    for axis, (got, want) in enumerate(zip(shape[1:], spec.input_shape), start=1):
        if (want == -1 and got < 1) or (want != -1 and got != want):
            raise InvalidInput(f"{fields.shape}: expected {expected_shape(spec)}, received {list(shape)} "
                               f"(dimension {axis} differs)")
    return shape


def check_finite(x: np.ndarray, field: str) -> np.ndarray:
    """Reject NaN and infinities, naming the first offending position."""
    finite = np.isfinite(x)
    if not finite.all():
        where = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise InvalidInput(f"{field}: expected finite values (NaN and Inf are rejected), received "
                           f"{x[where]!r} at index {list(where)} (image {where[0]})")
    return x


def tensor_from_bytes(data: bytes, shape: Sequence[int], spec: ModelSpec, fields: Fields = Fields(),
                      reject_non_finite: bool = True) -> np.ndarray:
    """A raw little-endian float32 tensor: the byte length must equal 4 x the shape's product."""
    shape = check_shape(shape, spec, fields)
    want = FLOAT32.itemsize * math.prod(shape)
    if len(data) != want:
        raise InvalidInput(f"{fields.data}: expected {want} bytes (4-byte float32 x {' x '.join(map(str, shape))}), "
                           f"received {len(data)}")
    x = np.frombuffer(data, dtype=FLOAT32).reshape(shape)
    if x.dtype != np.float32:  # a big-endian host
        x = x.astype(np.float32)
    return check_finite(x, fields.data) if reject_non_finite else x


def tensor_from_values(values: Sequence[float], shape: Sequence[int], spec: ModelSpec, fields: Fields,
                       reject_non_finite: bool = True) -> np.ndarray:
    """A tensor given as a list of numbers (KServe typed contents): one value per element."""
    shape = check_shape(shape, spec, fields)
    if len(values) != math.prod(shape):
        raise InvalidInput(f"{fields.data}: expected {math.prod(shape)} values for shape {list(shape)}, "
                           f"received {len(values)}")
    x = np.asarray(values, dtype=np.float32).reshape(shape)
    return check_finite(x, fields.data) if reject_non_finite else x


def light_border(image: Image.Image) -> bool:
    """Whether the outermost pixels are mostly light (mean above mid-gray): a picture on a white
    background, where a model trained on dark backgrounds (Fashion-MNIST) needs it inverted."""
    a = np.asarray(image.convert("L"), dtype=np.float32)
    border = np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]])
    return bool(border.mean() > 127.5)


def preprocess(image: Image.Image, pre: Preprocessing, field: str = "image") -> np.ndarray:
    """A decoded image of any mode ``service.images`` accepts -> float32 (C, H, W) as config.json's
    preprocessing says (DESIGN.md)."""
    image = eight_bit(image, field).convert("RGB" if pre.color == "rgb" else "L")
    if pre.invert == "always" or (pre.invert == "auto" and light_border(image)):
        image = ImageOps.invert(image)
    height, width = pre.resize
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32).reshape(height, width, pre.channels)
    x = pixels * np.float32(pre.scale)
    x = (x - np.asarray(pre.mean, dtype=np.float32)) / np.asarray(pre.std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def decode_image(data: bytes, pre: Preprocessing, field: str, max_pixels: int) -> np.ndarray:
    """One encoded PNG or JPEG -> float32 (C, H, W); undecodable or oversized images are refused."""
    if not data:
        raise InvalidInput(f"{field}: expected a PNG or JPEG image, received 0 bytes")
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise InvalidInput(f"{field}: expected at most {max_pixels} pixels, received a "
                                   f"{width}x{height} image ({width * height} pixels)")
            image.load()
            return preprocess(image, pre, field)
    except InvalidInput:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own guard fires at open, before our check
        raise InvalidInput(f"{field}: expected at most {max_pixels} pixels, received an image that declares "
                           f"more: {exc}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        head = data[:8].hex()
        raise InvalidInput(f"{field}: expected a PNG or JPEG image, received {len(data)} bytes that do not "
                           f"decode (starting {head}): {exc}") from None


def decode_images(images: Sequence[bytes], spec: ModelSpec, field: str, max_pixels: int,
                  max_images: int) -> np.ndarray:
    """Encoded images -> float32 (N, C, H, W) batch."""
    if not images:
        raise InvalidInput(f"{field}: expected at least 1 image, received 0")
    if len(images) > max_images:
        raise InvalidInput(f"{field}: expected at most max_batch_size={max_images} images, received {len(images)}")
    return np.stack([decode_image(data, spec.preprocessing, f"{field}[{i}]", max_pixels)
                     for i, data in enumerate(images)])
