"""Normalization: cross-channel local response normalization (ONNX LRN) and inference batch norm."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Layer, Shape, shape_error


@dataclass(frozen=True, repr=False)
class LRN(Layer):
    """y = x / (k + alpha/n * sum of x^2 over n neighbouring channels)^beta, exactly ONNX ``LRN``.

    The window for channel c spans [c - floor((n-1)/2), c + ceil((n-1)/2)], clipped to the channels.
    """

    kind = "lrn"
    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0

    def output_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 3:
            raise shape_error(self, in_shape, "expected a (C, H, W) volume")
        if self.size <= 0:
            raise shape_error(self, in_shape, "size must be positive")
        return tuple(in_shape)

    def macs(self, in_shape: Shape) -> int:
        return int(np.prod(in_shape)) * (self.size + 2)


@dataclass(frozen=True, repr=False)
class BatchNorm(Layer):
    """Inference-form batch normalization per channel: gamma * (x - mean) / sqrt(var + eps) + beta.

    ``mean`` and ``var`` are running statistics (state), not trained weights.
    """

    kind = "batchnorm"
    non_trainable = ("mean", "var")
    eps: float = 1e-5

    def output_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 3:
            raise shape_error(self, in_shape, "expected a (C, H, W) volume")
        return tuple(in_shape)

    def param_shapes(self, in_shape: Shape) -> dict[str, Shape]:
        c = (in_shape[0],)
        return {"gamma": c, "beta": c, "mean": c, "var": c}

    def macs(self, in_shape: Shape) -> int:
        return int(np.prod(in_shape))
