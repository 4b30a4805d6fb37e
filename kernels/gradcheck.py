"""Centered numeric gradients, the independent check of every analytic backward (cs231n style)."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np


def eval_numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """d f / d x for a scalar function, by (f(x + h) - f(x - h)) / 2h one element at a time.

    ``x`` is perturbed in place and restored; it must be a float64 array for the estimate to be exact
    to about h^2.
    """
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        plus = f(x)
        x[i] = old - h
        minus = f(x)
        x[i] = old
        grad[i] = (plus - minus) / (2 * h)
        it.iternext()
    return grad


def eval_numerical_gradient_array(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, df: np.ndarray,
                                  h: float = 1e-5) -> np.ndarray:
    """Numeric gradient of sum(f(x) * df) with respect to x: the vector-Jacobian product a backward computes."""
    return eval_numerical_gradient(lambda v: float(np.sum(f(v) * df)), x, h)


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """Largest elementwise relative error |a - b| / max(1e-8, |a| + |b|)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b)), initial=0.0))


def layer_gradient_errors(layer, x, params: dict[str, np.ndarray], seed: int = 0, h: float = 1e-5) -> dict[str, float]:
    """Relative error of each analytic gradient of a layer against the numeric one, at float64 inputs.

    The scalar is sum(forward(x) * dout) for a random dout; keys are ``"x"`` (or ``"x0"``, ``"x1"``,
    ... for a layer with several inputs) and each trainable parameter's name. Inference mode (no rng).
    """
    multi = isinstance(x, (list, tuple))
    xs = list(x) if multi else [x]
    out, cache = layer.forward(x, params)
    dout = np.random.default_rng(seed).standard_normal(out.shape)
    dx, dparams = layer.backward(dout, cache)
    dxs = list(dx) if multi else [dx]
    if len(dxs) != len(xs):
        raise ValueError(f"{layer!r}: backward returned {len(dxs)} input gradients for {len(xs)} inputs")
    errors = {}
    for i, (xi, dxi) in enumerate(zip(xs, dxs)):
        def f(v, i=i):
            args = xs[:i] + [v] + xs[i + 1:]
            return layer.forward(args if multi else args[0], params)[0]
        errors[f"x{i}" if multi else "x"] = rel_error(dxi, eval_numerical_gradient_array(f, xi, dout, h))
    trainable = [name for name in params if name not in layer.non_trainable]
    if sorted(dparams) != sorted(trainable):
        raise ValueError(f"{layer!r}: backward gave gradients for {sorted(dparams)}, the trainable parameters are {sorted(trainable)}")
    for name in trainable:
        num = eval_numerical_gradient_array(lambda v: layer.forward(x, {**params, name: v})[0], params[name], dout, h)
        errors[name] = rel_error(dparams[name], num)
    return errors
