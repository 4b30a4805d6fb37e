"""Inputs of the bad-request cases (bench/reliability_cases.py) and of the fuzz tests: random
images, raw tensors, images with one chosen value, PNGs, a decompression bomb and a GIF."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from service.generated.convnet.v1 import convnet_pb2 as pb


def images(n: int, shape=(3, 32, 32), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


def tensor(x: np.ndarray) -> pb.Tensor:
    return pb.Tensor(shape=x.shape, data=np.ascontiguousarray(x, dtype="<f4").tobytes())


def with_value(value: float, at=(0, 1, 2, 3)) -> np.ndarray:
    x = images(2)
    x[at] = value
    return x


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A valid PNG header declaring width x height gray pixels, with a tiny compressed body:
    decoding it would need width x height bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"\0" * (width + 1) * 64, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="GIF")
    return buffer.getvalue()
