"""Receptive fields as strided views (im2col) and their transpose (col2im), in two memory layouts.

Arrays stay logically NCHW; only their memory order varies. The im2col copy is fastest when its
innermost run is long: channels-last columns (N*H2*W2, G, F*F*C/G) copy runs of F*C contiguous
values, channels-first columns (G, C/G*F*F, N*H2*W2) copy runs along a whole output row. A
convolution picks the layout with the longer run (``channels_last_is_faster``); either way the
columns feed a single BLAS matrix product.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .base import Pad

NHWC = (0, 2, 3, 1)
CNHW = (1, 0, 2, 3)


def memory_order(x: np.ndarray) -> tuple[int, ...]:
    """The logical axes of x from outermost to innermost in memory."""
    return tuple(int(a) for a in np.argsort(x.strides, kind="stable")[::-1])


def pad_to(x: np.ndarray, pads: Pad, order: tuple[int, ...], value: float = 0.0) -> np.ndarray:
    """x zero- (or ``value``-) padded in height and width, stored contiguously in ``order``.

    Returns x itself when there is nothing to pad and it is already laid out that way.
    """
    top, left, bottom, right = pads
    if not any(pads):
        return np.ascontiguousarray(x.transpose(order)).transpose(np.argsort(order))
    n, c, h, w = x.shape
    shape = (n, c, h + top + bottom, w + left + right)
    out = np.empty([shape[a] for a in order], dtype=x.dtype).transpose(np.argsort(order))
    out[:, :, :top] = value
    out[:, :, top + h:] = value
    out[:, :, top:top + h, :left] = value
    out[:, :, top:top + h, left + w:] = value
    out[:, :, top:top + h, left:left + w] = x
    return out


def channels_last_is_faster(channels: int, size: int, dilation: int, stride: int, out_width: int) -> bool:
    """Whether channels-last columns copy longer contiguous runs than channels-first ones."""
    run_last = size * channels if dilation == 1 else channels
    run_first = out_width if stride == 1 else 1
    return run_last >= run_first


def tap_slices(size: int, stride: int, dilation: int, out_hw: tuple[int, int]) -> Iterator[tuple[int, int, slice, slice]]:
    """For each kernel tap (i, j): the (rows, cols) slices of the padded input it reads."""
    h2, w2 = out_hw
    for i in range(size):
        for j in range(size):
            r0, c0 = i * dilation, j * dilation
            yield i, j, slice(r0, r0 + stride * (h2 - 1) + 1, stride), slice(c0, c0 + stride * (w2 - 1) + 1, stride)


def _field_strides(xp: np.ndarray, stride: int, dilation: int, groups: int):
    sn, sc, sh, sw = xp.strides
    cg = xp.shape[1] // groups
    return {"n": sn, "h2": sh * stride, "w2": sw * stride, "g": sc * cg, "c": sc, "i": sh * dilation, "j": sw * dilation}


def cols_channels_last(xp: np.ndarray, size: int, stride: int, dilation: int, out_hw: tuple[int, int], groups: int) -> np.ndarray:
    """Columns (N*H2*W2, G, F*F*C/G): one row per output position, ordered (i, j, c) within a group."""
    n, c = xp.shape[:2]
    h2, w2 = out_hw
    s = _field_strides(xp, stride, dilation, groups)
    view = as_strided(xp, (n, h2, w2, groups, size, size, c // groups),
                      (s["n"], s["h2"], s["w2"], s["g"], s["i"], s["j"], s["c"]), writeable=False)
    return view.reshape(n * h2 * w2, groups, size * size * (c // groups))


def cols_channels_first(xp: np.ndarray, size: int, stride: int, dilation: int, out_hw: tuple[int, int], groups: int) -> np.ndarray:
    """Columns (G, C/G*F*F, N*H2*W2): one column per output position, ordered (c, i, j) like W."""
    n, c = xp.shape[:2]
    h2, w2 = out_hw
    s = _field_strides(xp, stride, dilation, groups)
    view = as_strided(xp, (groups, c // groups, size, size, n, h2, w2),
                      (s["g"], s["c"], s["i"], s["j"], s["n"], s["h2"], s["w2"]), writeable=False)
    return view.reshape(groups, (c // groups) * size * size, n * h2 * w2)


def col2im_channels_last(dcols: np.ndarray, padded_shape: tuple[int, ...], size: int, stride: int, dilation: int,
                         out_hw: tuple[int, int], groups: int) -> np.ndarray:
    """Transpose of ``cols_channels_last``: sum column entries back onto the padded input (NCHW view).

    Overlapping fields accumulate; one strided-slice add per kernel tap (F*F of them).
    """
    n, c, hp, wp = padded_shape
    h2, w2 = out_hw
    cg = c // groups
    d7 = dcols.reshape(n, h2, w2, groups, size, size, cg)
    buf = np.zeros((n, hp, wp, groups, cg), dtype=dcols.dtype)
    for i, j, rows, cols in tap_slices(size, stride, dilation, out_hw):
        buf[:, rows, cols] += d7[:, :, :, :, i, j]
    return buf.reshape(n, hp, wp, c).transpose(0, 3, 1, 2)


def col2im_channels_first(dcols: np.ndarray, padded_shape: tuple[int, ...], size: int, stride: int, dilation: int,
                          out_hw: tuple[int, int], groups: int) -> np.ndarray:
    """Transpose of ``cols_channels_first``: sum column entries back onto the padded input (NCHW view)."""
    n, c, hp, wp = padded_shape
    h2, w2 = out_hw
    d6 = dcols.reshape(c, size, size, n, h2, w2)
    buf = np.zeros((c, n, hp, wp), dtype=dcols.dtype)
    for i, j, rows, cols in tap_slices(size, stride, dilation, out_hw):
        buf[:, :, rows, cols] += d6[:, i, j]
    return buf.transpose(1, 0, 2, 3)
