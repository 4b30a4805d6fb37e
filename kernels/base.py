"""The layer contract every kernel follows.

A layer is an immutable set of hyperparameters with a shape rule and a pair of pure functions:
``forward(x, params, rng=None) -> (out, cache)`` and ``backward(dout, cache) -> (dx, dparams)``.
Shapes are per sample (no batch axis): ``(C, H, W)`` for volumes, ``(D,)`` for vectors; layers
with several inputs take a tuple of shapes and a list of arrays.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

Shape = tuple[int, ...]
Pad = tuple[int, int, int, int]  # (top, left, bottom, right), the ONNX ``pads`` order


class ShapeError(ValueError):
    """An impossible layer configuration for a given input volume."""


def shape_error(layer: "Layer", in_shape: Any, why: str) -> ShapeError:
    """A ValueError naming the layer, the input volume and the hyperparameters."""
    return ShapeError(f"{layer!r} cannot take input {tuple(in_shape)}: {why}")


def as_pad(pad: int | tuple[int, ...]) -> Pad:
    """Normalise an int or (top, left, bottom, right) padding to the 4-tuple form."""
    if isinstance(pad, int):
        return (pad, pad, pad, pad)
    if len(pad) == 2:
        return (pad[0], pad[1], pad[0], pad[1])
    if len(pad) == 4:
        return tuple(int(p) for p in pad)  # type: ignore[return-value]
    raise ValueError(f"pad must be an int, (h, w) or (top, left, bottom, right); got {pad!r}")


ROUNDINGS = ("exact", "floor", "ceil")


def window_out(layer: "Layer", in_shape: Shape, size: int, stride: int, pad: Pad, dilation: int = 1,
               rounding: str = "exact") -> tuple[int, int]:
    """The spatial shape rule shared by convolution and pooling: (W - F_eff + P_total)/S + 1.

    ``rounding`` says what a non-integer result means: "exact" raises instead of silently cropping
    (the notes' rule, the default); "floor" drops the trailing cells no window fits, as ONNX Conv and
    pooling do; "ceil" rounds up as ONNX/PyTorch ``ceil_mode`` does, except that the last window must
    start inside the input or the leading padding (one starting in the trailing padding is dropped).
    """
    if rounding not in ROUNDINGS:
        raise shape_error(layer, in_shape, f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    _, h, w = in_shape
    top, left, bottom, right = pad
    eff = dilation * (size - 1) + 1
    out = []
    for axis, (n, begin, p) in (("height", (h, top, top + bottom)), ("width", (w, left, left + right))):
        span = n + p - eff
        if span < 0:
            raise shape_error(layer, in_shape, f"a {eff}x{eff} window is larger than the padded {axis} {n + p}")
        if rounding == "ceil":
            count = -(-span // stride) + 1
            out.append(count - 1 if (count - 1) * stride >= n + begin else count)
            continue
        if span % stride and rounding == "exact":
            raise shape_error(
                layer, in_shape,
                f"({axis} {n} - window {eff} + padding {p}) / stride {stride} + 1 = {span / stride + 1} is not an integer",
            )
        out.append(span // stride + 1)
    return out[0], out[1]


class Layer:
    """Base of all layer hyperparameter dataclasses; subclasses are frozen dataclasses."""

    kind: ClassVar[str] = ""
    arity: ClassVar[int] = 1  # number of inputs; 0 means any number >= 2 (channel concat)
    non_trainable: ClassVar[tuple[str, ...]] = ()  # parameter names that are state, not weights

    def output_shape(self, in_shape: Any) -> Shape:
        """The per-sample output shape; raises ShapeError for an impossible configuration."""
        return tuple(in_shape)

    def param_shapes(self, in_shape: Any) -> dict[str, Shape]:
        """Name -> shape of each parameter array this layer needs for ``in_shape``."""
        return {}

    def macs(self, in_shape: Any) -> int:
        """Multiply-adds per sample (the summary's compute figure)."""
        return 0

    def forward(self, x: Any, params: dict[str, np.ndarray], rng: np.random.Generator | None = None) -> tuple[Any, Any]:
        raise NotImplementedError

    def backward(self, dout: np.ndarray, cache: Any) -> tuple[Any, dict[str, np.ndarray]]:
        raise NotImplementedError

    def check_input(self, x: Any) -> Shape:
        """Validate a batch against the shape rule and return the per-sample output shape."""
        if self.arity == 1:
            if x.ndim < 2:
                raise shape_error(self, x.shape, "expected a batch (N, ...)")
            return self.output_shape(x.shape[1:])
        return self.output_shape(tuple(a.shape[1:] for a in x))

    def check_params(self, in_shape: Any, params: dict[str, np.ndarray]) -> None:
        """Raise a ValueError naming the layer and parameter when one is missing or mis-shaped."""
        for name, shape in self.param_shapes(in_shape).items():
            if name not in params:
                raise ValueError(f"{self!r}: missing parameter {name!r} of shape {shape}")
            got = tuple(np.shape(params[name]))
            if got != tuple(shape):
                raise ValueError(f"{self!r}: parameter {name!r} must have shape {tuple(shape)}, got {got}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description: the kind plus every hyperparameter."""
        d = {"kind": self.kind}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            d[f.name] = list(v) if isinstance(v, tuple) else v
        return d

    def __repr__(self) -> str:
        fields = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))  # type: ignore[arg-type]
        return f"{type(self).__name__}({fields})"
