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
