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
        """W (K, C/G, F, F) as (G, F*F*C/G, K/G): each group's filters as columns, rows in im2col order."""
        k, cg, f, _ = w.shape
        g = self.groups
        w = w.reshape(g, k // g, cg, f, f)  # (G, K/G, C/G, F, F)
        return w.transpose(0, 3, 4, 2, 1).reshape(g, f * f * cg, k // g)  # (G, F*F*C/G, K/G)

    def forward(self, x, params, rng=None):
        """Convolve an (N, C, H, W) batch: im2col of channels-last windows, then one matrix product per group.

        Row (n, y, x) of the product holds the K filter responses at that position; the result is an
        NCHW view of that channels-last memory.
        """
        k, h2, w2 = self.check_input(x)
        self.check_params(x.shape[1:], params)
        n, g = x.shape[0], self.groups
        geometry = (self.size, self.stride, self.dilation, (h2, w2), g)
        xp = im2col.pad_nhwc(x, self.pads)  # (N, C, Hp, Wp) over NHWC memory
        cols = im2col.im2col(xp, *geometry)  # (N*H2*W2, G, F*F*C/G)
        wmat = self.weight_matrix(params["W"].astype(x.dtype, copy=False))  # (G, F*F*C/G, K/G)
        y = np.concatenate([np.dot(cols[:, gi], wmat[gi]) for gi in range(g)], axis=1) if g > 1 else np.dot(cols[:, 0], wmat[0])
        y = y.reshape(n, h2, w2, k)  # (N*H2*W2, K) -> (N, H2, W2, K)
        if self.bias:
            y += params["b"].astype(x.dtype, copy=False)
        return y.transpose(0, 3, 1, 2), (geometry, xp.shape, cols, wmat, x.shape)  # (N, K, H2, W2) over NHWC memory

    def backward(self, dout, cache):
        """dW = columns^T @ dout; dx = col2im(dout @ W^T); db sums dout over batch and space.

        ``np.dot`` rather than ``@``: for a transposed operand NumPy's matmul can miss BLAS and
        run a plain loop (measured 100x slower on the column matrix), while dot always calls GEMM.
        """
        geometry, xp_shape, cols, wmat, x_shape = cache
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
            dcols = np.dot(dy[:, 0], wmat[0].T)[:, None]  # (N*H2*W2, 1, F*F*C)
        else:
            dcols = np.stack([np.dot(dy[:, gi], wmat[gi].T) for gi in range(g)], axis=1)  # (N*H2*W2, G, F*F*C/G)
        dxp = im2col.col2im(dcols, xp_shape, *geometry)  # (N, C, Hp, Wp) over NHWC memory
        top, left, _, _ = self.pads
        _, _, h, w = x_shape
        return dxp[:, :, top:top + h, left:left + w], dparams  # (N, C, H, W)
