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
