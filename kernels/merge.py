"""Layers that join branches: channel concatenation (inception) and element-wise add (residual)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Layer, Shape, shape_error


@dataclass(frozen=True, repr=False)
class Concat(Layer):
    """Stack volumes of equal height and width along depth."""

    kind = "concat"
    arity = 0

    def output_shape(self, in_shape: tuple[Shape, ...]) -> Shape:
        if len(in_shape) < 2 or any(len(s) != 3 for s in in_shape):
            raise shape_error(self, in_shape, "expected two or more (C, H, W) volumes")
        if len({s[1:] for s in in_shape}) != 1:
            raise shape_error(self, in_shape, "spatial sizes differ")
        return (sum(s[0] for s in in_shape),) + tuple(in_shape[0][1:])

    def forward(self, x, params, rng=None):
        self.check_input(x)
        return np.concatenate(x, axis=1), [a.shape[1] for a in x]  # (N, C1+C2+..., H, W)

    def backward(self, dout, cache):
        return np.split(dout, np.cumsum(cache)[:-1], axis=1), {}  # [(N, C1, H, W), (N, C2, H, W), ...]


@dataclass(frozen=True, repr=False)
class Add(Layer):
    """Element-wise sum of two volumes of the same shape (the residual connection)."""

    kind = "add"
    arity = 2

    def output_shape(self, in_shape: tuple[Shape, ...]) -> Shape:
        if len(in_shape) != 2 or tuple(in_shape[0]) != tuple(in_shape[1]):
            raise shape_error(self, in_shape, "expected two inputs of the same shape")
        return tuple(in_shape[0])

    def macs(self, in_shape: tuple[Shape, ...]) -> int:
        return int(np.prod(in_shape[0]))

    def forward(self, x, params, rng=None):
        self.check_input(x)
        a, b = x
        return a + b, None

    def backward(self, dout, cache):
        return [dout, dout.copy()], {}
