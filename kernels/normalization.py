"""Normalization: cross-channel local response normalization (ONNX LRN) and inference batch norm."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .base import Layer, Shape, shape_error


@dataclass(frozen=True, repr=False)
class LRN(Layer):
    """y = x / (k + alpha/n * sum of x^2 over n neighbouring channels)^beta, exactly ONNX ``LRN``.

    The window for channel c spans [c - floor((n-1)/2), c + ceil((n-1)/2)], clipped to the channels.
    """

    kind = "lrn"
    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0

    def output_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 3:
            raise shape_error(self, in_shape, "expected a (C, H, W) volume")
        if self.size <= 0:
            raise shape_error(self, in_shape, "size must be positive")
        return tuple(in_shape)

    def macs(self, in_shape: Shape) -> int:
        return int(np.prod(in_shape)) * (self.size + 2)

    @property
    def _reach(self) -> tuple[int, int]:
        """How many channels the window reaches below and above its centre."""
        below = (self.size - 1) // 2
        return below, self.size - 1 - below

    def forward(self, x, params, rng=None):
        self.check_input(x)
        below, above = self._reach
        dtype = x.dtype.type
        denom = dtype(self.k) + dtype(self.alpha / self.size) * _channel_window_sum(x * x, below, above)
        return x * denom ** dtype(-self.beta), (x, denom)

    def backward(self, dout, cache):
        """d/dx of x * d^-beta, where every d in x's window depends on x^2 (the transposed window)."""
        x, denom = cache
        below, above = self._reach
        through_denom = _channel_window_sum(dout * x * denom ** (-self.beta - 1), above, below)
        dx = dout * denom ** -self.beta - (2 * self.beta * self.alpha / self.size) * x * through_denom
        return dx, {}


class BatchStats(NamedTuple):
    """A training-mode batch norm's per-channel batch mean and (biased) variance, for the running averages."""

    mean: np.ndarray
    var: np.ndarray
    count: int  # values per channel (N*H*W) the statistics were taken over


@dataclass(frozen=True, repr=False)
class BatchNorm(Layer):
    """Batch normalization per channel: gamma * (x - mean) / sqrt(var + eps) + beta.

    Inference (``rng=None``) uses the running statistics ``mean`` and ``var`` (state, not trained
    weights), which is the ONNX ``BatchNormalization`` the exporter writes. Training (an rng
    given, as for dropout) normalises with the batch's own statistics and returns them in the
    cache (``BatchStats``) so the trainer can update the running averages.
    """

    kind = "batchnorm"
    non_trainable = ("mean", "var")
    eps: float = 1e-5

    def output_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 3:
            raise shape_error(self, in_shape, "expected a (C, H, W) volume")
        return tuple(in_shape)

    def param_shapes(self, in_shape: Shape) -> dict[str, Shape]:
        c = (in_shape[0],)
        return {"gamma": c, "beta": c, "mean": c, "var": c}

    def macs(self, in_shape: Shape) -> int:
        return int(np.prod(in_shape))

    def forward(self, x, params, rng=None):
        """One multiply-add per value: x * (gamma / sqrt(var + eps)) + (beta - mean * that scale)."""
        self.check_input(x)
        self.check_params(x.shape[1:], params)
        gamma, beta, mean, var = (params[k].astype(x.dtype, copy=False) for k in ("gamma", "beta", "mean", "var"))
        stats = None
        if rng is not None:
            mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))  # (C,), (C,)
            stats = BatchStats(mean, var, x.size // x.shape[1])
        inv_std = 1 / np.sqrt(var + x.dtype.type(self.eps))
        scale = gamma * inv_std
        out = x * scale[:, None, None] + (beta - mean * scale)[:, None, None]
        return out, (x, mean, inv_std, gamma, stats)

    def backward(self, dout, cache):
        """Gradients for x, gamma and beta; the running statistics are state and get none.

        In training mode the batch mean and variance depend on x too, which adds the two
        centring terms of the standard batch-norm backward pass.
        """
        x, mean, inv_std, gamma, stats = cache
        xhat = (x - mean[:, None, None]) * inv_std[:, None, None]  # (N, C, H, W)
        dgamma, dbeta = (dout * xhat).sum(axis=(0, 2, 3)), dout.sum(axis=(0, 2, 3))
        dparams = {"gamma": dgamma, "beta": dbeta}
        scale = (gamma * inv_std)[:, None, None]  # (C, 1, 1)
        if stats is None:
            return dout * scale, dparams
        m = x.dtype.type(stats.count)
        dx = scale * (dout - (dbeta / m)[:, None, None] - xhat * (dgamma / m)[:, None, None])
        return dx, dparams


def _channel_window_sum(a: np.ndarray, below: int, above: int) -> np.ndarray:
    """For each channel c, the sum of a over channels [c - below, c + above] that exist.

    Works channels-last, the memory order convolutions produce, so each shifted slice is a contiguous run.
    """
    n, c, h, w = a.shape
    padded = np.zeros((n, h, w, c + below + above), dtype=a.dtype).transpose(0, 3, 1, 2)  # (N, C+b+a, H, W) over NHWC
    padded[:, below:below + c] = a
    total = padded[:, 0:c].copy(order="K")
    for t in range(1, below + above + 1):
        total += padded[:, t:t + c]
    return total
