"""Layers that join branches: channel concatenation (inception), element-wise add (residual) and multiply (squeeze-excitation)."""
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


def broadcast_shape(layer: Layer, in_shape: tuple[Shape, ...]) -> Shape:
    """The shape two same-rank inputs broadcast to: each axis equal, or 1 on one side (NumPy and ONNX rule)."""
    if len(in_shape) != 2 or len(in_shape[0]) != len(in_shape[1]):
        raise shape_error(layer, in_shape, "expected two inputs of the same shape, or of the same rank with axes of size 1 to broadcast")
    out = []
    for a, b in zip(*in_shape):
        if a != b and 1 not in (a, b):
            raise shape_error(layer, in_shape, f"axes of size {a} and {b} are not the same shape and do not broadcast")
        out.append(max(a, b))
    return tuple(out)


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a gradient of the broadcast result over the axes an input of ``shape`` was stretched along."""
    axes = tuple(i for i, (g, s) in enumerate(zip(grad.shape, shape)) if s == 1 and g != 1)
    return grad.sum(axis=axes, keepdims=True) if axes else grad


@dataclass(frozen=True, repr=False)
class _Broadcasting(Layer):
    """Two volumes combined element by element, a size-1 axis broadcasting: the shape rule of Add and Mul."""

    arity = 2

    def output_shape(self, in_shape: tuple[Shape, ...]) -> Shape:
        return broadcast_shape(self, in_shape)

    def macs(self, in_shape: tuple[Shape, ...]) -> int:
        return int(np.prod(self.output_shape(in_shape)))


@dataclass(frozen=True, repr=False)
class Add(_Broadcasting):
    """Element-wise sum of two volumes (the residual connection); a size-1 axis broadcasts."""

    kind = "add"

    def forward(self, x, params, rng=None):
        self.check_input(x)
        a, b = x
        return a + b, (a.shape, b.shape)

    def backward(self, dout, cache):
        a_shape, b_shape = cache
        return [unbroadcast(dout, a_shape), unbroadcast(dout, b_shape).copy()], {}


@dataclass(frozen=True, repr=False)
class Mul(_Broadcasting):
    """Element-wise product of two volumes; a size-1 axis broadcasts, so (C, H, W) * (C, 1, 1) scales
    each channel (the squeeze-and-excitation gate)."""

    kind = "mul"

    def forward(self, x, params, rng=None):
        self.check_input(x)
        a, b = x
        return a * b, (a, b)

    def backward(self, dout, cache):
        a, b = cache
        return [unbroadcast(dout * b, a.shape), unbroadcast(dout * a, b.shape)], {}
