"""POOL: max and average pooling over F x F windows, and global average pooling."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Layer, Pad, Shape, as_pad, shape_error, window_out


@dataclass(frozen=True, repr=False)
class _Pool2d(Layer):
    size: int
    stride: int | None = None  # None: equal to size (non-overlapping)
    pad: int | Pad = 0

    @property
    def step(self) -> int:
        return self.size if self.stride is None else self.stride

    @property
    def pads(self) -> Pad:
        return as_pad(self.pad)

    def output_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 3:
            raise shape_error(self, in_shape, "expected a (C, H, W) volume")
        if self.size <= 0 or self.step <= 0:
            raise shape_error(self, in_shape, "size and stride must be positive")
        if min(self.pads) < 0 or max(self.pads) >= self.size:
            raise shape_error(self, in_shape, "padding must be in [0, size)")
        h2, w2 = window_out(self, in_shape, self.size, self.step, self.pads)
        return (in_shape[0], h2, w2)


@dataclass(frozen=True, repr=False)
class MaxPool2d(_Pool2d):
    """Max over each window; padded positions never win (they count as -inf)."""

    kind = "maxpool"


@dataclass(frozen=True, repr=False)
class AvgPool2d(_Pool2d):
    """Mean over each window, padded positions excluded from the count (ONNX count_include_pad=0)."""

    kind = "avgpool"

    def macs(self, in_shape: Shape) -> int:
        c, h2, w2 = self.output_shape(in_shape)
        return c * h2 * w2 * self.size * self.size


@dataclass(frozen=True, repr=False)
class GlobalAvgPool(Layer):
    """Mean over all positions of each channel: (C, H, W) -> (C, 1, 1)."""

    kind = "globalavgpool"

    def output_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 3:
            raise shape_error(self, in_shape, "expected a (C, H, W) volume")
        return (in_shape[0], 1, 1)

    def macs(self, in_shape: Shape) -> int:
        return int(np.prod(in_shape))
