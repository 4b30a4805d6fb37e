"""POOL: max and average pooling over F x F windows, and global average pooling."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Layer, Pad, Shape, as_pad, shape_error, window_out
from .im2col import pad_nhwc, tap_slices


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

    def _taps(self, out_hw: tuple[int, int]):
        return tap_slices(self.size, self.step, 1, out_hw)


@dataclass(frozen=True, repr=False)
class MaxPool2d(_Pool2d):
    """Max over each window; padded positions never win (they count as -inf)."""

    kind = "maxpool"

    def forward(self, x, params, rng=None):
        """Running maximum over the F*F window taps (strided views); padding is -inf."""
        _, h2, w2 = self.check_input(x)
        xp = pad_nhwc(x, self.pads, -np.inf) if any(self.pads) else x
        taps = [xp[:, :, rows, cols] for _, _, rows, cols in self._taps((h2, w2))]  # F*F views (N, C, H2, W2)
        out = taps[0].copy(order="K")
        for tap in taps[1:]:
            np.maximum(out, tap, out=out)
        return out, (xp, out, x.shape)

    def backward(self, dout, cache):
        """Route each gradient to the first input of its window that holds the maximum."""
        xp, out, x_shape = cache
        _, _, h2, w2 = dout.shape
        dxp = np.zeros_like(xp, dtype=dout.dtype)
        unrouted = np.ones(out.shape, dtype=bool)
        for _, _, rows, cols in self._taps((h2, w2)):
            hit = unrouted & (xp[:, :, rows, cols] == out)
            dxp[:, :, rows, cols] += np.where(hit, dout, 0)
            unrouted &= ~hit
        return _crop_nchw(dxp, self.pads, x_shape), {}


@dataclass(frozen=True, repr=False)
class AvgPool2d(_Pool2d):
    """Mean over each window, padded positions excluded from the count (ONNX count_include_pad=0)."""

    kind = "avgpool"

    def macs(self, in_shape: Shape) -> int:
        c, h2, w2 = self.output_shape(in_shape)
        return c * h2 * w2 * self.size * self.size

    def _counts(self, in_hw: tuple[int, int], out_hw: tuple[int, int], dtype) -> np.ndarray:
        """(H2, W2): how many real (unpadded) cells each window covers."""
        top, left, bottom, right = self.pads
        real = np.zeros((in_hw[0] + top + bottom, in_hw[1] + left + right), dtype=dtype)
        real[top:top + in_hw[0], left:left + in_hw[1]] = 1
        return sum(real[rows, cols] for _, _, rows, cols in self._taps(out_hw))

    def forward(self, x, params, rng=None):
        """Window sums over the F*F taps divided by the count of real cells in each window."""
        _, h2, w2 = self.check_input(x)
        xp = pad_nhwc(x, self.pads) if any(self.pads) else x
        taps = [xp[:, :, rows, cols] for _, _, rows, cols in self._taps((h2, w2))]  # F*F views (N, C, H2, W2)
        out = taps[0].copy(order="K")
        for tap in taps[1:]:
            out += tap
        counts = self._counts(x.shape[2:], (h2, w2), x.dtype)
        out /= counts
        return out, (xp.shape, counts, x.shape)

    def backward(self, dout, cache):
        """Spread each gradient evenly over the real cells of its window."""
        xp_shape, counts, x_shape = cache
        _, _, h2, w2 = dout.shape
        share = dout / counts
        dxp = np.zeros(xp_shape, dtype=dout.dtype)
        for _, _, rows, cols in self._taps((h2, w2)):
            dxp[:, :, rows, cols] += share
        return _crop_nchw(dxp, self.pads, x_shape), {}


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

    def forward(self, x, params, rng=None):
        self.check_input(x)
        return x.mean(axis=(2, 3), keepdims=True), x.shape

    def backward(self, dout, cache):
        n, c, h, w = cache
        return np.broadcast_to(dout / (h * w), cache).copy(), {}


def _crop_nchw(dxp: np.ndarray, pads: Pad, x_shape: tuple[int, ...]) -> np.ndarray:
    """The unpadded part of a padded gradient, as a contiguous array."""
    top, left, _, _ = pads
    _, _, h, w = x_shape
    return np.ascontiguousarray(dxp[:, :, top:top + h, left:left + w])
