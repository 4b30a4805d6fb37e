"""Element-wise layers: ReLU and dropout (identity at inference)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Layer, Shape, shape_error


@dataclass(frozen=True, repr=False)
class ReLU(Layer):
    """max(0, x), element-wise."""

    kind = "relu"

    def forward(self, x, params, rng=None):
        self.check_input(x)
        return np.maximum(x, 0), x

    def backward(self, dout, cache):
        return dout * (cache > 0), {}


@dataclass(frozen=True, repr=False)
class Dropout(Layer):
    """Inverted dropout: identity without an rng (inference); with one, zero units with probability p."""

    kind = "dropout"
    p: float = 0.5

    def output_shape(self, in_shape: Shape) -> Shape:
        if not 0.0 <= self.p < 1.0:
            raise shape_error(self, in_shape, "p must be in [0, 1)")
        return tuple(in_shape)

    def forward(self, x, params, rng=None):
        """Identity without an rng; otherwise keep each unit with probability 1-p, scaled by 1/(1-p)."""
        self.check_input(x)
        if rng is None:
            return x, None
        mask = (rng.random(x.shape) >= self.p).astype(x.dtype) / x.dtype.type(1.0 - self.p)
        return x * mask, mask

    def backward(self, dout, cache):
        return (dout if cache is None else dout * cache), {}
