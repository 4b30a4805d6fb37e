"""Element-wise layers: ReLU and dropout (identity at inference)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Layer, Shape, shape_error


@dataclass(frozen=True, repr=False)
class ReLU(Layer):
    """max(0, x), element-wise."""

    kind = "relu"


@dataclass(frozen=True, repr=False)
class Dropout(Layer):
    """Inverted dropout: identity without an rng (inference); with one, zero units with probability p."""

    kind = "dropout"
    p: float = 0.5

    def output_shape(self, in_shape: Shape) -> Shape:
        if not 0.0 <= self.p < 1.0:
            raise shape_error(self, in_shape, "p must be in [0, 1)")
        return tuple(in_shape)
