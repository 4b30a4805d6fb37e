"""FC: the affine layer out = x @ W + b on flat vectors, and the flatten that feeds it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Layer, Shape, shape_error


@dataclass(frozen=True, repr=False)
class Linear(Layer):
    """Fully connected: every output sees the whole input vector; W (D, units), b (units,)."""

    kind = "fc"
    units: int
    bias: bool = True

    def output_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 1:
            raise shape_error(self, in_shape, "expected a flat (D,) vector; flatten the volume first")
        if self.units <= 0:
            raise shape_error(self, in_shape, "units must be positive")
        return (self.units,)

    def param_shapes(self, in_shape: Shape) -> dict[str, Shape]:
        shapes = {"W": (in_shape[0], self.units)}
        if self.bias:
            shapes["b"] = (self.units,)
        return shapes

    def macs(self, in_shape: Shape) -> int:
        return in_shape[0] * self.units

    def forward(self, x, params, rng=None):
        self.check_input(x)
        self.check_params(x.shape[1:], params)
        out = x @ params["W"].astype(x.dtype, copy=False)
        if self.bias:
            out += params["b"].astype(x.dtype, copy=False)
        return out, (x, params["W"])

    def backward(self, dout, cache):
        x, w = cache
        dparams = {"W": np.dot(x.T, dout)}  # (D, units); np.dot: matmul can miss BLAS on a transposed operand
        if self.bias:
            dparams["b"] = dout.sum(axis=0)
        return np.dot(dout, w.T.astype(dout.dtype, copy=False)), dparams  # (N, D)


@dataclass(frozen=True, repr=False)
class Flatten(Layer):
    """(C, H, W) -> (C*H*W,) in row-major (NCHW) order."""

    kind = "flatten"

    def output_shape(self, in_shape: Shape) -> Shape:
        return (int(np.prod(in_shape)),)

    def forward(self, x, params, rng=None):
        self.check_input(x)
        return x.reshape(x.shape[0], -1), x.shape  # (N, C, H, W) -> (N, C*H*W), NCHW order

    def backward(self, dout, cache):
        return dout.reshape(cache), {}  # (N, C*H*W) -> (N, C, H, W)
