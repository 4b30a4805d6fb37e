"""CONV: 2-D convolution with stride, zero-padding, dilation and groups (im2col + one matmul)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Layer, Pad, Shape, as_pad, shape_error, window_out


@dataclass(frozen=True, repr=False)
class Conv2d(Layer):
    """K filters of extent F x F over the full (group's) depth; weights W (K, C/groups, F, F), bias b (K,)."""

    kind = "conv"
    filters: int
    size: int
    stride: int = 1
    pad: int | Pad = 0
    dilation: int = 1
    groups: int = 1
    bias: bool = True

    @property
    def pads(self) -> Pad:
        return as_pad(self.pad)

    def output_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 3:
            raise shape_error(self, in_shape, "expected a (C, H, W) volume")
        for name in ("filters", "size", "stride", "dilation", "groups"):
            if getattr(self, name) <= 0:
                raise shape_error(self, in_shape, f"{name} must be positive")
        if min(self.pads) < 0:
            raise shape_error(self, in_shape, "padding must be non-negative")
        c = in_shape[0]
        if c % self.groups or self.filters % self.groups:
            raise shape_error(self, in_shape, f"channels {c} and filters {self.filters} must both divide into {self.groups} groups")
        h2, w2 = window_out(self, in_shape, self.size, self.stride, self.pads, self.dilation)
        return (self.filters, h2, w2)

    def param_shapes(self, in_shape: Shape) -> dict[str, Shape]:
        shapes = {"W": (self.filters, in_shape[0] // self.groups, self.size, self.size)}
        if self.bias:
            shapes["b"] = (self.filters,)
        return shapes

    def macs(self, in_shape: Shape) -> int:
        k, h2, w2 = self.output_shape(in_shape)
        return k * h2 * w2 * (in_shape[0] // self.groups) * self.size * self.size
