"""CONV: 2-D convolution with stride, zero-padding, dilation and groups (im2col + one BLAS matmul per group)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import im2col
from .base import Layer, Pad, Shape, as_pad, shape_error, window_out


@dataclass(frozen=True, repr=False)
class Conv2d(Layer):
    """K filters of extent F x F over the full (group's) depth; weights W (K, C/groups, F, F), bias b (K,)."""

    kind = "conv"
    filters: int
    size: int
    stride: int = 1
    pad: int | Pad = 0
    dilation: int = 1
    groups: int = 1
    bias: bool = True
    rounding: str = "exact"  # "exact" or "floor" (ONNX Conv: trailing cells no window fits are dropped)

    @property
    def pads(self) -> Pad:
        return as_pad(self.pad)

    def output_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 3:
            raise shape_error(self, in_shape, "expected a (C, H, W) volume")
        for name in ("filters", "size", "stride", "dilation", "groups"):
            if getattr(self, name) <= 0:
                raise shape_error(self, in_shape, f"{name} must be positive")
        if min(self.pads) < 0:
            raise shape_error(self, in_shape, "padding must be non-negative")
        c = in_shape[0]
        if c % self.groups or self.filters % self.groups:
            raise shape_error(self, in_shape, f"channels {c} and filters {self.filters} must both divide into {self.groups} groups")
        if self.rounding == "ceil":
            raise shape_error(self, in_shape, "a convolution's rounding is 'exact' or 'floor'")
        h2, w2 = window_out(self, in_shape, self.size, self.stride, self.pads, self.dilation, self.rounding)
        return (self.filters, h2, w2)

    def param_shapes(self, in_shape: Shape) -> dict[str, Shape]:
        shapes = {"W": (self.filters, in_shape[0] // self.groups, self.size, self.size)}
        if self.bias:
            shapes["b"] = (self.filters,)
        return shapes

    def macs(self, in_shape: Shape) -> int:
        k, h2, w2 = self.output_shape(in_shape)
        return k * h2 * w2 * (in_shape[0] // self.groups) * self.size * self.size

    def weight_matrix(self, w: np.ndarray) -> np.ndarray:
        """W (K, C/G, F, F) as (G, K/G, F*F*C/G): each group's filters as rows, entries in im2col order.

        Filters stay rows (the products use the transposed view, which BLAS reads as is): moving only
        the channel axis innermost copies within each filter, about 20x faster than making K innermost,
        which dominated a convolution over a small volume (512 filters on 2x2: 20 ms of 21).
        """
        k, cg, f, _ = w.shape
        g = self.groups
        w = w.reshape(g, k // g, cg, f, f)  # (G, K/G, C/G, F, F)
        return np.ascontiguousarray(w.transpose(0, 1, 3, 4, 2)).reshape(g, k // g, f * f * cg)  # (G, K/G, F*F*C/G)

    def forward(self, x, params, rng=None):
        """Convolve an (N, C, H, W) batch: im2col of channels-last windows, then one matrix product per group.

        Row (n, y, x) of the product holds the K filter responses at that position; the result is an
        NCHW view of that channels-last memory. A depthwise convolution (one input channel per group)
        skips the column matrix, F*F times larger than its input, and sums the F*F shifted taps instead.
        """
        k, h2, w2 = self.check_input(x)
        self.check_params(x.shape[1:], params)
        n, g = x.shape[0], self.groups
        geometry = (self.size, self.stride, self.dilation, (h2, w2), g)
        xp = im2col.pad_nhwc(x, self.pads)  # (N, C, Hp, Wp) over NHWC memory
        w = params["W"].astype(x.dtype, copy=False)
        if x.shape[1] == g:
            y, cols, wmat = self._depthwise(xp, (h2, w2), w), None, None  # (N, H2, W2, K)
        else:
            cols = im2col.im2col(xp, *geometry)  # (N*H2*W2, G, F*F*C/G)
            wmat = self.weight_matrix(w)  # (G, K/G, F*F*C/G)
            y = np.concatenate([np.dot(cols[:, gi], wmat[gi].T) for gi in range(g)], axis=1) if g > 1 else np.dot(cols[:, 0], wmat[0].T)
            y = y.reshape(n, h2, w2, k)  # (N*H2*W2, K) -> (N, H2, W2, K)
        if self.bias:
            y += params["b"].astype(x.dtype, copy=False)
        return y.transpose(0, 3, 1, 2), (geometry, xp, cols, wmat, x.shape, w)  # (N, K, H2, W2) over NHWC memory

    def _depthwise(self, xp: np.ndarray, out_hw: tuple[int, int], w: np.ndarray) -> np.ndarray:
        """(N, H2, W2, K) channels-last: each filter times its channel's shifted window taps, summed over the taps.

        Filter k reads input channel k // (K/C) (K/C filters per channel, the depth multiplier).
        """
        n, c = xp.shape[:2]
        k, f = w.shape[0], self.size
        nhwc = xp.transpose(0, 2, 3, 1)  # (N, Hp, Wp, C), contiguous
        if k > c:
            nhwc = np.repeat(nhwc, k // c, axis=3)  # (N, Hp, Wp, K)
        taps = w.reshape(k, f * f).T  # (F*F, K): tap (i, j) is row i*F + j
        y = np.zeros((n, *out_hw, k), dtype=xp.dtype)
        product = np.empty_like(y)
        for i, j, rows, cols in im2col.tap_slices(f, self.stride, self.dilation, out_hw):
            np.multiply(nhwc[:, rows, cols], taps[i * f + j], out=product)
            y += product
        return y

    def backward(self, dout, cache):
        """dW = columns^T @ dout; dx = col2im(dout @ W^T); db sums dout over batch and space.

        ``np.dot`` rather than ``@``: for a transposed operand NumPy's matmul can miss BLAS and
        run a plain loop (measured 100x slower on the column matrix), while dot always calls GEMM.
        """
        geometry, xp, cols, wmat, x_shape, w = cache
        if cols is None:
            cols, wmat = im2col.im2col(xp, *geometry), self.weight_matrix(w)
        g = self.groups
        n, k, h2, w2 = dout.shape
        f, cg, kg = self.size, x_shape[1] // g, k // g
        dy = np.ascontiguousarray(dout.transpose(0, 2, 3, 1)).reshape(n * h2 * w2, g, kg)  # (N*H2*W2, G, K/G)
        dwmat = np.stack([np.dot(cols[:, gi].T, dy[:, gi]) for gi in range(g)])  # (G, F*F*C/G, K/G)
        dw = dwmat.reshape(g, f, f, cg, kg).transpose(0, 4, 3, 1, 2)  # (G, K/G, C/G, F, F)
        dparams = {"W": dw.reshape(k, cg, f, f)}  # (K, C/G, F, F)
        if self.bias:
            dparams["b"] = dy.sum(axis=0).reshape(k)  # (G, K/G) -> (K,)
        if g == 1:
            dcols = np.dot(dy[:, 0], wmat[0])[:, None]  # (N*H2*W2, 1, F*F*C)
        else:
            dcols = np.stack([np.dot(dy[:, gi], wmat[gi]) for gi in range(g)], axis=1)  # (N*H2*W2, G, F*F*C/G)
        dxp = im2col.col2im(dcols, xp.shape, *geometry)  # (N, C, Hp, Wp) over NHWC memory
        top, left, _, _ = self.pads
        _, _, h, w = x_shape
        return dxp[:, :, top:top + h, left:left + w], dparams  # (N, C, H, W)
