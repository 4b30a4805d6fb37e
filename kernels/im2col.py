"""Receptive fields as strided views (im2col) and their transpose (col2im), channels-last.

Arrays stay logically NCHW; convolution works on channels-last (NHWC) memory, so that a window
row of F*C values is one contiguous run: the im2col copy streams memory and the column matrix
feeds one BLAS matrix product. A convolution's output is an NCHW view of NHWC memory, which the
next layer reads without a copy.

One im2col row may cover a block of P horizontally adjacent output positions (their F x
(S*(P-1) + F) joint window, copied once). BLAS multiplies a matrix with few columns (a layer with
few filters) inefficiently; the block turns that into P*K columns against a banded weight
matrix, and the smaller column matrix costs less memory traffic.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .base import Pad

BLOCK_TARGET_COLUMNS = 64  # smallest P*K at which BLAS runs near full speed on this kind of product


def pad_nhwc(x: np.ndarray, pads: Pad, value: float = 0.0) -> np.ndarray:
    """x padded in height and width with ``value``, as an NCHW view of contiguous NHWC memory.

    Copies only what is needed: an unpadded input already stored channels-last is returned as is.
    """
    n, c, h, w = x.shape
    top, left, bottom, right = pads
    if not any(pads):
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    out = np.empty((n, h + top + bottom, w + left + right, c), dtype=x.dtype).transpose(0, 3, 1, 2)
    out[:, :, :top] = value
    out[:, :, top + h:] = value
    out[:, :, top:top + h, :left] = value
    out[:, :, top:top + h, left + w:] = value
    out[:, :, top:top + h, left:left + w] = x
    return out


def row_block(filters_per_group: int, out_width: int, dilation: int) -> int:
    """How many adjacent output positions share an im2col row: 1, 2 or 4, dividing the output width."""
    if dilation != 1:
        return 1
    fits = [p for p in (1, 2, 4) if out_width % p == 0]
    return next((p for p in fits if p * filters_per_group >= BLOCK_TARGET_COLUMNS), fits[-1])


def block_width(size: int, stride: int, block: int) -> int:
    """Width taps of a row block's joint window (``size`` when the block is a single position)."""
    return stride * (block - 1) + size


def tap_slices(size: int, stride: int, dilation: int, out_hw: tuple[int, int],
               block: int = 1) -> Iterator[tuple[int, int, slice, slice]]:
    """For each tap (i, j) of a (row-block) window: the (rows, cols) slices of the padded input it reads."""
    h2, w2 = out_hw
    blocks = w2 // block
    for i in range(size):
        for j in range(block_width(size, stride, block)):
            r0, c0 = i * dilation, j * dilation
            rows = slice(r0, r0 + stride * (h2 - 1) + 1, stride)
            yield i, j, rows, slice(c0, c0 + stride * block * (blocks - 1) + 1, stride * block)


def im2col(xp: np.ndarray, size: int, stride: int, dilation: int, out_hw: tuple[int, int], groups: int,
           block: int) -> np.ndarray:
    """Columns (N*H2*W2/P, G, F*FW*C/G) of a padded channels-last input: a row per block of P positions."""
    n, c = xp.shape[:2]
    h2, w2 = out_hw
    sn, sc, sh, sw = xp.strides
    cg, fw = c // groups, block_width(size, stride, block)
    view = as_strided(xp, shape=(n, h2, w2 // block, groups, size, fw, cg),
                      strides=(sn, sh * stride, sw * stride * block, sc * cg, sh * dilation, sw * dilation, sc),
                      writeable=False)
    return view.reshape(n * h2 * (w2 // block), groups, size * fw * cg)


def col2im(dcols: np.ndarray, padded_shape: tuple[int, ...], size: int, stride: int, dilation: int,
           out_hw: tuple[int, int], groups: int, block: int) -> np.ndarray:
    """Transpose of ``im2col``: sum the column entries back onto the padded input (an NCHW view).

    Overlapping windows accumulate; one strided-slice add per window tap.
    """
    n, c, hp, wp = padded_shape
    h2, w2 = out_hw
    cg = c // groups
    d7 = dcols.reshape(n, h2, w2 // block, groups, size, block_width(size, stride, block), cg)
    buf = np.zeros((n, hp, wp, groups, cg), dtype=dcols.dtype)
    for i, j, rows, cols in tap_slices(size, stride, dilation, out_hw, block):
        buf[:, rows, cols] += d7[:, :, :, :, i, j]
    return buf.reshape(n, hp, wp, c).transpose(0, 3, 1, 2)
