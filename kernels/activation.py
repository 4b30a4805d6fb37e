"""Element-wise layers: ReLU and its relatives (clip/ReLU6, leaky ReLU), the sigmoid family (sigmoid,
hard sigmoid, hard swish, SiLU) and dropout (identity at inference).

Each keeps the input dtype and returns the input as its cache; backward multiplies the incoming
gradient by the derivative at that input.
"""
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
class Clip(Layer):
    """min(max(x, min), max), ONNX ``Clip``; a bound of None is no bound. ReLU6 is Clip(0, 6)."""

    kind = "clip"
    min: float | None = None
    max: float | None = None

    def output_shape(self, in_shape: Shape) -> Shape:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise shape_error(self, in_shape, f"min {self.min} must not exceed max {self.max}")
        return tuple(in_shape)

    def forward(self, x, params, rng=None):
        self.check_input(x)
        t = x.dtype.type
        out = x if self.min is None else np.maximum(x, t(self.min))
        out = out if self.max is None else np.minimum(out, t(self.max))
        return (out.copy() if out is x else out), x

    def backward(self, dout, cache):
        inside = np.ones(cache.shape, dtype=bool)
        if self.min is not None:
            inside &= cache > self.min
        if self.max is not None:
            inside &= cache < self.max
        return dout * inside, {}


@dataclass(frozen=True, repr=False)
class LeakyReLU(Layer):
    """x for x > 0, alpha * x otherwise (ONNX ``LeakyRelu``)."""

    kind = "leakyrelu"
    alpha: float = 0.01

    def forward(self, x, params, rng=None):
        self.check_input(x)
        return np.where(x > 0, x, x * x.dtype.type(self.alpha)), x

    def backward(self, dout, cache):
        return dout * np.where(cache > 0, 1.0, self.alpha).astype(dout.dtype), {}


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), computed from exp(-|x|) so that no exponent overflows."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1, e) / (1 + e)


@dataclass(frozen=True, repr=False)
class Sigmoid(Layer):
    """The logistic function 1 / (1 + exp(-x))."""

    kind = "sigmoid"

    def forward(self, x, params, rng=None):
        self.check_input(x)
        s = sigmoid(x)
        return s, s

    def backward(self, dout, cache):
        return dout * cache * (1 - cache), {}


@dataclass(frozen=True, repr=False)
class HardSigmoid(Layer):
    """max(0, min(1, alpha * x + beta)), ONNX ``HardSigmoid`` (PyTorch's Hardsigmoid: alpha 1/6)."""

    kind = "hardsigmoid"
    alpha: float = 0.2
    beta: float = 0.5

    def forward(self, x, params, rng=None):
        self.check_input(x)
        t = x.dtype.type
        z = x * t(self.alpha) + t(self.beta)
        return np.clip(z, t(0), t(1)), z

    def backward(self, dout, cache):
        return dout * (self.alpha * ((cache > 0) & (cache < 1))).astype(dout.dtype), {}


@dataclass(frozen=True, repr=False)
class HardSwish(Layer):
    """x * max(0, min(1, x / 6 + 1/2)), ONNX ``HardSwish`` and PyTorch's Hardswish."""

    kind = "hardswish"

    def forward(self, x, params, rng=None):
        self.check_input(x)
        t = x.dtype.type
        return x * np.clip(x / t(6) + t(0.5), t(0), t(1)), x

    def backward(self, dout, cache):
        x = cache
        slope = np.where(x >= 3, 1.0, np.where(x <= -3, 0.0, x / 3 + 0.5)).astype(dout.dtype)
        return dout * slope, {}


@dataclass(frozen=True, repr=False)
class SiLU(Layer):
    """x * sigmoid(x), also called swish (EfficientNet's activation)."""

    kind = "silu"

    def forward(self, x, params, rng=None):
        self.check_input(x)
        s = sigmoid(x)
        return x * s, (x, s)

    def backward(self, dout, cache):
        x, s = cache
        return dout * s * (1 + x * (1 - s)), {}


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
