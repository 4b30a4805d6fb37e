"""Softmax over class scores and the softmax cross-entropy loss that trains on them."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Layer, Shape, shape_error


@dataclass(frozen=True, repr=False)
class Softmax(Layer):
    """Probabilities from a (D,) score vector, computed stably (max subtracted)."""

    kind = "softmax"

    def output_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 1:
            raise shape_error(self, in_shape, "expected a flat (D,) score vector")
        return tuple(in_shape)

    def forward(self, x, params, rng=None):
        self.check_input(x)
        probs = _softmax(x)
        return probs, probs

    def backward(self, dout, cache):
        probs = cache
        return probs * (dout - (dout * probs).sum(axis=1, keepdims=True)), {}


def _softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax with the row maximum subtracted, so large scores cannot overflow."""
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_cross_entropy(scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(scores) against integer labels y, and its gradient on the scores."""
    if scores.ndim != 2:
        raise ValueError(f"softmax_cross_entropy: scores must be (N, classes), got shape {scores.shape}")
    y = np.asarray(y)
    n, classes = scores.shape
    if y.shape != (n,):
        raise ValueError(f"softmax_cross_entropy: labels must have shape ({n},), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or (n and (y.min() < 0 or y.max() >= classes)):
        raise ValueError(f"softmax_cross_entropy: labels must be integers in [0, {classes}), got {y!r}")
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(n), y].mean()
    dscores = np.exp(log_probs)
    dscores[np.arange(n), y] -= 1
    return float(loss), dscores / n
