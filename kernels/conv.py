"""CONV: 2-D convolution with stride, zero-padding, dilation and groups (im2col + one matmul)."""
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

    def _banded_weights(self, w: np.ndarray, block: int) -> np.ndarray:
        """W (K, C/G, F, F) as (G, F*FW*C/G, P*K/G): filter p of a row block shifted p*S columns right."""
        k, cg, f, _ = w.shape
        g, s = self.groups, self.stride
        per_group = w.reshape(g, k // g, cg, f, f).transpose(0, 3, 4, 2, 1)
        banded = np.zeros((g, f, im2col.block_width(f, s, block), cg, block, k // g), dtype=w.dtype)
        for p in range(block):
            banded[:, :, p * s:p * s + f, :, p] = per_group
        return banded.reshape(g, -1, block * (k // g))

    def _fold_weight_grad(self, dbanded: np.ndarray, cg: int, block: int) -> np.ndarray:
        """Transpose of ``_banded_weights``: sum each position's share back into dW (K, C/G, F, F)."""
        g, f, s = self.groups, self.size, self.stride
        kg = self.filters // g
        d6 = dbanded.reshape(g, f, im2col.block_width(f, s, block), cg, block, kg)
        dw = sum(d6[:, :, p * s:p * s + f, :, p] for p in range(block))
        return dw.transpose(0, 4, 3, 1, 2).reshape(self.filters, cg, f, f)

    def forward(self, x, params, rng=None):
        """Convolve an (N, C, H, W) batch: im2col of channels-last windows, then one matrix product.

        The result is an NCHW view of channels-last memory.
        """
        k, h2, w2 = self.check_input(x)
        self.check_params(x.shape[1:], params)
        n, g = x.shape[0], self.groups
        block = im2col.row_block(k // g, w2, self.dilation)
        geometry = (self.size, self.stride, self.dilation, (h2, w2), g, block)
        xp = im2col.pad_nhwc(x, self.pads)
        cols = im2col.im2col(xp, *geometry)
        wmat = self._banded_weights(params["W"].astype(x.dtype, copy=False), block)
        if g == 1:
            y = (cols[:, 0] @ wmat[0]).reshape(n, h2, w2, k)
        else:
            y = np.matmul(cols.transpose(1, 0, 2), wmat).reshape(g, -1, block, k // g).transpose(1, 2, 0, 3)
            y = y.reshape(n, h2, w2, k)
        if self.bias:
            y += params["b"].astype(x.dtype, copy=False)
        return y.transpose(0, 3, 1, 2), (geometry, xp.shape, cols, wmat, x.shape)

    def backward(self, dout, cache):
        """dW = columns^T @ dout; dx = col2im(dout @ W^T); db sums dout over batch and space."""
        geometry, xp_shape, cols, wmat, x_shape = cache
        g, block = self.groups, geometry[-1]
        n, k, h2, w2 = dout.shape
        dy = dout.transpose(0, 2, 3, 1).reshape(-1, block, g, k // g).transpose(2, 0, 1, 3)
        dy = dy.reshape(g, -1, block * (k // g))
        dparams = {"W": self._fold_weight_grad(np.matmul(cols.transpose(1, 2, 0), dy), x_shape[1] // g, block)}
        if self.bias:
            dparams["b"] = dout.sum(axis=(0, 2, 3))
        dcols = np.matmul(dy, wmat.transpose(0, 2, 1)).transpose(1, 0, 2)
        dxp = im2col.col2im(dcols, xp_shape, *geometry)
        top, left, _, _ = self.pads
        _, _, h, w = x_shape
        return np.ascontiguousarray(dxp[:, :, top:top + h, left:left + w]), dparams
