"""Helpers shared by the tests/integration/test_server_*.py files (no tests here).

Scores are compared with ``assert_scores``: served (onnxruntime, float32) against the NumPy
reference (float32). Both sum the same products in different orders; each conv or FC output
sums up to a few hundred float32 products (epsilon 1.2e-7) over up to ~10 layers, which measures
at most ~1e-5 absolute on scores of magnitude ~10 for the default models. ATOL/RTOL are 10x that.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from exporter.repository import read_config
from service.generated.convnet.v1 import convnet_pb2 as pb
from training import defaults

ATOL = 1e-4
RTOL = 1e-4
DEFAULT_MODELS = tuple(m.name for m in defaults.DEFAULT_MODELS)


def assert_scores(served: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_allclose(served, expected, rtol=RTOL, atol=ATOL)


def softmax(scores: np.ndarray) -> np.ndarray:
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def images(n: int, seed: int, shape=(3, 32, 32)) -> np.ndarray:
    """n distinct random images, float32 NCHW."""
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


def marked(n: int, value: float, seed: int) -> np.ndarray:
    """``images(n, seed)`` with the first value set to ``value``: the trigger of service/faults.py's test hook."""
    x = images(n, seed=seed)
    x[0, 0, 0, 0] = value
    return x


def input_shape(model_repo, model: str) -> tuple[int, ...]:
    """The per-image input shape of a model of the repository, from its config.json."""
    return tuple(read_config(model_repo / model)["input"]["shape"])


def tensor(x: np.ndarray) -> pb.Tensor:
    return pb.Tensor(shape=x.shape, data=np.ascontiguousarray(x, dtype="<f4").tobytes())


def reply_scores(reply: pb.ClassifyResponse) -> np.ndarray:
    return np.array([list(r.scores) for r in reply.results], dtype=np.float32)


def encode(pixels: np.ndarray, fmt: str, **save_args) -> bytes:
    """uint8 (H, W) or (H, W, 3|4) pixels as a PNG or JPEG file."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


def preprocess_with_pillow(data: bytes, config: dict) -> np.ndarray:
    """DESIGN.md's preprocessing done here independently: decode, convert, invert, bilinear resize, normalize."""
    pre = config["preprocessing"]
    image = Image.open(io.BytesIO(data)).convert("RGB" if pre["color"] == "rgb" else "L")
    gray = np.asarray(image.convert("L"), dtype=np.float64)
    border = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    if pre.get("invert") == "always" or (pre.get("invert") == "auto" and border.mean() > 127.5):
        image = Image.fromarray(255 - np.asarray(image))
    height, width = pre["resize"]
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float64)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    x = (pixels * pre["scale"] - np.array(pre["mean"])) / np.array(pre["std"])
    return x.transpose(2, 0, 1)[None].astype(np.float32)
