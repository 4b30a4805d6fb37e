"""CONV: 2-D convolution with stride, zero-padding, dilation and groups (im2col + one matmul)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Layer, Pad, Shape, as_pad, shape_error, window_out
from . import im2col


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
        h2, w2 = window_out(self, in_shape, self.size, self.stride, self.pads, self.dilation)
        return (self.filters, h2, w2)

    def param_shapes(self, in_shape: Shape) -> dict[str, Shape]:
        shapes = {"W": (self.filters, in_shape[0] // self.groups, self.size, self.size)}
        if self.bias:
            shapes["b"] = (self.filters,)
        return shapes

    def macs(self, in_shape: Shape) -> int:
        k, h2, w2 = self.output_shape(in_shape)
        return k * h2 * w2 * (in_shape[0] // self.groups) * self.size * self.size

    def forward(self, x, params, rng=None):
        """Convolve an (N, C, H, W) batch: im2col over the receptive fields, then one matrix product.

        The result is logically NCHW; its memory order is that of the columns (channels-last or
        channels-first), which the next layer reads without a copy.
        """
        k, h2, w2 = self.check_input(x)
        self.check_params(x.shape[1:], params)
        n, c = x.shape[:2]
        g, f = self.groups, self.size
        w = params["W"].astype(x.dtype, copy=False)
        channels_last = im2col.channels_last_is_faster(c // g, f, self.dilation, self.stride, w2)
        geometry = (f, self.stride, self.dilation, (h2, w2), g)
        if channels_last:
            xp = im2col.pad_to(x, self.pads, im2col.NHWC)
            cols = im2col.cols_channels_last(xp, *geometry)
            wmat = w.reshape(g, k // g, c // g, f, f).transpose(0, 3, 4, 2, 1).reshape(g, -1, k // g)
            y = cols[:, 0] @ wmat[0] if g == 1 else np.matmul(cols.transpose(1, 0, 2), wmat).transpose(1, 0, 2).reshape(-1, k)
            if self.bias:
                y += params["b"].astype(x.dtype, copy=False)
            out = y.reshape(n, h2, w2, k).transpose(0, 3, 1, 2)
        else:
            xp = im2col.pad_to(x, self.pads, im2col.CNHW)
            cols = im2col.cols_channels_first(xp, *geometry)
            wmat = w.reshape(g, k // g, -1)
            y = np.matmul(wmat, cols).reshape(k, -1)
            if self.bias:
                y += params["b"].astype(x.dtype, copy=False)[:, None]
            out = y.reshape(k, n, h2, w2).transpose(1, 0, 2, 3)
        return out, (channels_last, xp.shape, cols, wmat, x.shape)

    def backward(self, dout, cache):
        """dW = columns against dout; dx = col2im of W^T against dout; db sums dout over batch and space."""
        channels_last, xp_shape, cols, wmat, x_shape = cache
        n, k, h2, w2 = dout.shape
        g, f = self.groups, self.size
        cg = x_shape[1] // g
        geometry = (f, self.stride, self.dilation, (h2, w2), g)
        if channels_last:
            dy = dout.transpose(0, 2, 3, 1).reshape(n * h2 * w2, g, k // g).transpose(1, 0, 2)
            dw = np.matmul(cols.transpose(1, 2, 0), dy).reshape(g, f, f, cg, k // g).transpose(0, 4, 3, 1, 2)
            dcols = np.matmul(dy, wmat.transpose(0, 2, 1)).transpose(1, 0, 2)
            dxp = im2col.col2im_channels_last(dcols, xp_shape, *geometry)
        else:
            dy = dout.transpose(1, 0, 2, 3).reshape(g, k // g, n * h2 * w2)
            dw = np.matmul(dy, cols.transpose(0, 2, 1))
            dcols = np.matmul(wmat.transpose(0, 2, 1), dy)
            dxp = im2col.col2im_channels_first(dcols, xp_shape, *geometry)
        dparams = {"W": dw.reshape(k, cg, f, f)}
        if self.bias:
            dparams["b"] = dout.sum(axis=(0, 2, 3))
        top, left, _, _ = self.pads
        _, _, h, w = x_shape
        return np.ascontiguousarray(dxp[:, :, top:top + h, left:left + w]), dparams
