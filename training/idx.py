"""The IDX file format of (Fashion-)MNIST, read with NumPy and gzip, every header field checked.

IDX: a big-endian header (two zero bytes, a type byte, 0x08 = unsigned byte, and a byte with the
number of dimensions), one 4-byte size per dimension, then the data row-major. A missing,
truncated or corrupt file raises ``IdxError`` naming the file and what is wrong, never a silently
short data set.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

UBYTE = 0x08


class IdxError(ValueError):
    """An IDX file that is missing, truncated or not what was expected; the message names the file."""


def read_idx(path: str | Path, ndim: int, shape: tuple[int | None, ...] | None = None) -> np.ndarray:
    """The uint8 array in an IDX file (gzip-compressed when the name ends in .gz).

    ``ndim`` is the expected number of dimensions (3 for images, 1 for labels); ``shape`` may pin
    sizes (None: any).
    """
    path = Path(path)
    if not path.is_file():
        raise IdxError(f"{path}: file not found (install the data set: apt-get install dataset-fashion-mnist)")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise IdxError(f"{path}: not a readable gzip file ({e})") from e
    if len(raw) < 4:
        raise IdxError(f"{path}: truncated: {len(raw)} bytes, shorter than the 4-byte IDX magic number")
    zero, dtype, dims = int.from_bytes(raw[0:2], "big"), raw[2], raw[3]
    if zero != 0 or dtype != UBYTE:
        raise IdxError(f"{path}: wrong magic number 0x{raw[:4].hex()}: expected 0x0000{UBYTE:02x}{ndim:02x} "
                       f"(unsigned bytes, {ndim} dimensions)")
    if dims != ndim:
        raise IdxError(f"{path}: {dims} dimensions, expected {ndim}")
    header = 4 + 4 * dims
    if len(raw) < header:
        raise IdxError(f"{path}: truncated: {len(raw)} bytes, shorter than the {header}-byte header")
    sizes = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    if shape is not None:
        for axis, (got, want) in enumerate(zip(sizes, shape)):
            if want is not None and got != want:
                raise IdxError(f"{path}: dimension {axis} has size {got}, expected {want} (sizes {sizes})")
    expected = header + int(np.prod(sizes))
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "trailing bytes"
        raise IdxError(f"{path}: {what}: {len(raw)} bytes, expected {expected} for sizes {sizes}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(sizes)  # (N,) or (N, H, W)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzip when the name ends in .gz); the tests' fixture maker."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    raw = bytes([0, 0, UBYTE, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape) + array.tobytes()
    Path(path).write_bytes(gzip.compress(raw) if str(path).endswith(".gz") else raw)
