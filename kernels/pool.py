"""POOL: max and average pooling over F x F windows (exact, floor or ceil rounding), and global pooling."""
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
    rounding: str = "exact"  # "exact", "floor" or "ceil" (ONNX/PyTorch ceil_mode): see base.window_out

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
        h2, w2 = window_out(self, in_shape, self.size, self.step, self.pads, rounding=self.rounding)
        return (in_shape[0], h2, w2)

    def window_pads(self, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> Pad:
        """The padding the windows actually read: the declared pads, plus on the bottom and right
        what ceil rounding's last window reaches beyond them (cells that never count)."""
        top, left, bottom, right = self.pads
        reach = [(o - 1) * self.step + self.size - (n + p) for o, n, p in zip(out_hw, in_hw, (top + bottom, left + right))]
        return (top, left, bottom + max(reach[0], 0), right + max(reach[1], 0))

    def _taps(self, out_hw: tuple[int, int]):
        return tap_slices(self.size, self.step, 1, out_hw)


@dataclass(frozen=True, repr=False)
class MaxPool2d(_Pool2d):
    """Max over each window; padded positions never win (they count as -inf)."""

    kind = "maxpool"

    def forward(self, x, params, rng=None):
        """Running maximum over the F*F window taps (strided views); padding is -inf."""
        _, h2, w2 = self.check_input(x)
        pads = self.window_pads(x.shape[2:], (h2, w2))
        xp = pad_nhwc(x, pads, -np.inf) if any(pads) else x
        taps = [xp[:, :, rows, cols] for _, _, rows, cols in self._taps((h2, w2))]  # F*F views (N, C, H2, W2)
        out = taps[0].copy(order="K")
        for tap in taps[1:]:
            np.maximum(out, tap, out=out)
        return out, (xp, out, x.shape, pads)

    def backward(self, dout, cache):
        """Route each gradient to the first input of its window that holds the maximum."""
        xp, out, x_shape, pads = cache
        _, _, h2, w2 = dout.shape
        dxp = np.zeros_like(xp, dtype=dout.dtype)
        unrouted = np.ones(out.shape, dtype=bool)
        for _, _, rows, cols in self._taps((h2, w2)):
            hit = unrouted & (xp[:, :, rows, cols] == out)
            dxp[:, :, rows, cols] += np.where(hit, dout, 0)
            unrouted &= ~hit
        return _crop_nchw(dxp, pads, x_shape), {}


@dataclass(frozen=True, repr=False)
class AvgPool2d(_Pool2d):
    """Mean over each window. The divisor counts the real cells (ONNX count_include_pad=0) or, with
    ``count_include_pad``, the real and declared padded cells; ceil rounding's overhang never counts."""

    kind = "avgpool"
    count_include_pad: bool = False

    def macs(self, in_shape: Shape) -> int:
        c, h2, w2 = self.output_shape(in_shape)
        return c * h2 * w2 * self.size * self.size

    def _counts(self, in_hw: tuple[int, int], out_hw: tuple[int, int], pads: Pad, dtype) -> np.ndarray:
        """(H2, W2): how many counted cells each window covers."""
        top, left, bottom, right = pads
        counted = np.zeros((in_hw[0] + top + bottom, in_hw[1] + left + right), dtype=dtype)
        if self.count_include_pad:
            declared = self.pads
            counted[:in_hw[0] + declared[0] + declared[2], :in_hw[1] + declared[1] + declared[3]] = 1
        else:
            counted[top:top + in_hw[0], left:left + in_hw[1]] = 1
        return sum(counted[rows, cols] for _, _, rows, cols in self._taps(out_hw))

    def forward(self, x, params, rng=None):
        """Window sums over the F*F taps divided by the count of counted cells in each window."""
        _, h2, w2 = self.check_input(x)
        pads = self.window_pads(x.shape[2:], (h2, w2))
        xp = pad_nhwc(x, pads) if any(pads) else x
        taps = [xp[:, :, rows, cols] for _, _, rows, cols in self._taps((h2, w2))]  # F*F views (N, C, H2, W2)
        out = taps[0].copy(order="K")
        for tap in taps[1:]:
            out += tap
        counts = self._counts(x.shape[2:], (h2, w2), pads, x.dtype)
        out /= counts
        return out, (xp.shape, counts, x.shape, pads)

    def backward(self, dout, cache):
        """Spread each gradient evenly over the counted cells of its window (padding's share is dropped)."""
        xp_shape, counts, x_shape, pads = cache
        _, _, h2, w2 = dout.shape
        share = dout / counts
        dxp = np.zeros(xp_shape, dtype=dout.dtype)
        for _, _, rows, cols in self._taps((h2, w2)):
            dxp[:, :, rows, cols] += share
        return _crop_nchw(dxp, pads, x_shape), {}


@dataclass(frozen=True, repr=False)
class _GlobalPool(Layer):
    keepdims: bool = True  # (C, 1, 1) like ONNX GlobalAveragePool; False: (C,) like ReduceMean(axes=[2, 3], keepdims=0)

    def output_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 3:
            raise shape_error(self, in_shape, "expected a (C, H, W) volume")
        return (in_shape[0], 1, 1) if self.keepdims else (in_shape[0],)

    def macs(self, in_shape: Shape) -> int:
        return int(np.prod(in_shape))


@dataclass(frozen=True, repr=False)
class GlobalAvgPool(_GlobalPool):
    """Mean over all positions of each channel: (C, H, W) -> (C, 1, 1), or (C,) without keepdims."""

    kind = "globalavgpool"

    def forward(self, x, params, rng=None):
        self.check_input(x)
        return x.mean(axis=(2, 3), keepdims=self.keepdims), x.shape

    def backward(self, dout, cache):
        n, c, h, w = cache
        return np.broadcast_to(dout.reshape(n, c, 1, 1) / (h * w), cache).copy(), {}


@dataclass(frozen=True, repr=False)
class GlobalMaxPool(_GlobalPool):
    """Maximum over all positions of each channel: (C, H, W) -> (C, 1, 1), or (C,) without keepdims."""

    kind = "globalmaxpool"

    def forward(self, x, params, rng=None):
        self.check_input(x)
        n, c, h, w = x.shape
        flat = x.reshape(n, c, h * w)
        first = flat.argmax(axis=2)  # (N, C): the first position holding the maximum
        out = np.take_along_axis(flat, first[:, :, None], axis=2)  # (N, C, 1)
        return out.reshape((n, c, 1, 1) if self.keepdims else (n, c)), (first, x.shape)

    def backward(self, dout, cache):
        """Route each channel's gradient to the first position holding its maximum."""
        first, (n, c, h, w) = cache
        dx = np.zeros((n, c, h * w), dtype=dout.dtype)
        np.put_along_axis(dx, first[:, :, None], dout.reshape(n, c, 1), axis=2)
        return dx.reshape(n, c, h, w), {}


def _crop_nchw(dxp: np.ndarray, pads: Pad, x_shape: tuple[int, ...]) -> np.ndarray:
    """The unpadded part of a padded gradient, as a contiguous array."""
    top, left, _, _ = pads
    _, _, h, w = x_shape
    return np.ascontiguousarray(dxp[:, :, top:top + h, left:left + w])
