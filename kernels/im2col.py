"""Receptive fields as a strided view (im2col) and its transpose (col2im), channels-last.

Arrays stay logically NCHW; convolution works on channels-last (NHWC) memory, so that the
C values of one window tap are one contiguous run: the im2col copy streams memory and the column
matrix feeds one BLAS matrix product. A convolution's output is an NCHW view of NHWC memory,
which the next layer reads without a copy.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .base import Pad


def pad_nhwc(x: np.ndarray, pads: Pad, value: float = 0.0) -> np.ndarray:
    """x padded in height and width with ``value``, as an NCHW view of contiguous NHWC memory.

    Copies only what is needed: an unpadded input already stored channels-last is returned as is.
    """
    n, c, h, w = x.shape
    top, left, bottom, right = pads
    if not any(pads):
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)  # (N, C, H, W) over NHWC memory
    out = np.empty((n, h + top + bottom, w + left + right, c), dtype=x.dtype).transpose(0, 3, 1, 2)  # (N, C, Hp, Wp)
    out[:, :, :top] = value
    out[:, :, top + h:] = value
    out[:, :, top:top + h, :left] = value
    out[:, :, top:top + h, left + w:] = value
    out[:, :, top:top + h, left:left + w] = x
    return out


def tap_slices(size: int, stride: int, dilation: int, out_hw: tuple[int, int]) -> Iterator[tuple[int, int, slice, slice]]:
    """For each tap (i, j) of an F x F window: the (rows, cols) slices of the padded input it reads."""
    h2, w2 = out_hw
    for i in range(size):
        for j in range(size):
            r0, c0 = i * dilation, j * dilation
            yield i, j, slice(r0, r0 + stride * (h2 - 1) + 1, stride), slice(c0, c0 + stride * (w2 - 1) + 1, stride)


def im2col(xp: np.ndarray, size: int, stride: int, dilation: int, out_hw: tuple[int, int], groups: int) -> np.ndarray:
    """Columns (N*H2*W2, G, F*F*C/G) of a padded input (an NCHW view of NHWC memory).

    Row r is output position (n, y, x); within a group its F*F*C/G entries are ordered (tap row i,
    tap column j, channel), the order ``Conv2d.weight_matrix`` lays the filters out in. Filled with
    one strided copy per window tap (F*F copies in all), the exact mirror of ``col2im``; a 1x1
    window with stride 1 needs no copy (the result is then a view of the input, read-only by contract).
    """
    n, c = xp.shape[:2]
    h2, w2 = out_hw
    cg = c // groups
    if size == 1 and stride == 1:
        return xp.transpose(0, 2, 3, 1).reshape(n * h2 * w2, groups, cg)  # a 1x1 window's columns are the input itself
    nhwc = xp.transpose(0, 2, 3, 1).reshape(xp.shape[0], xp.shape[2], xp.shape[3], groups, cg)  # (N, Hp, Wp, G, C/G)
    cols = np.empty((n, h2, w2, groups, size, size, cg), dtype=xp.dtype)  # (N, H2, W2, G, F, F, C/G)
    for i, j, rows, taps in tap_slices(size, stride, dilation, out_hw):
        cols[:, :, :, :, i, j] = nhwc[:, rows, taps]
    return cols.reshape(n * h2 * w2, groups, size * size * cg)  # (N*H2*W2, G, F*F*C/G)


def col2im(dcols: np.ndarray, padded_shape: tuple[int, ...], size: int, stride: int, dilation: int,
           out_hw: tuple[int, int], groups: int) -> np.ndarray:
    """Transpose of ``im2col``: sum the column entries back onto the padded input (an NCHW view).

    Overlapping windows accumulate; one strided-slice add per window tap (F*F adds in all).
    """
    n, c, hp, wp = padded_shape
    h2, w2 = out_hw
    cg = c // groups
    d7 = dcols.reshape(n, h2, w2, groups, size, size, cg)  # (N, H2, W2, G, F, F, C/G)
    buf = np.zeros((n, hp, wp, groups, cg), dtype=dcols.dtype)  # (N, Hp, Wp, G, C/G)
    for i, j, rows, taps in tap_slices(size, stride, dilation, out_hw):
        buf[:, rows, taps] += d7[:, :, :, :, i, j]
    return buf.reshape(n, hp, wp, c).transpose(0, 3, 1, 2)  # (N, C, Hp, Wp) over NHWC memory
