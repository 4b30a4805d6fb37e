"""Channel rearrangements of ShuffleNet: the channel shuffle (reshape-transpose-reshape) and a
contiguous slice of the channels (ONNX Split/Slice along axis 1)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Layer, Shape, shape_error


@dataclass(frozen=True, repr=False)
class ChannelShuffle(Layer):
    """Channels seen as (groups, C/groups), transposed to (C/groups, groups) and flattened again.

    Output channel k * groups + g is input channel g * (C/groups) + k: a fixed permutation.
    """

    kind = "channelshuffle"
    groups: int

    def output_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 3:
            raise shape_error(self, in_shape, "expected a (C, H, W) volume")
        if self.groups <= 0 or in_shape[0] % self.groups:
            raise shape_error(self, in_shape, f"channels {in_shape[0]} must divide into {self.groups} groups")
        return tuple(in_shape)

    def permutation(self, channels: int) -> np.ndarray:
        """Input channel of each output channel."""
        return np.arange(channels).reshape(self.groups, channels // self.groups).T.reshape(-1)

    def forward(self, x, params, rng=None):
        self.check_input(x)
        n, c, h, w = x.shape
        out = x.reshape(n, self.groups, c // self.groups, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)
        return out, c

    def backward(self, dout, cache):
        dx = np.empty_like(dout)
        dx[:, self.permutation(cache)] = dout
        return dx, {}


@dataclass(frozen=True, repr=False)
class ChannelSlice(Layer):
    """Channels [start, stop) of a volume; two of them express ONNX ``Split`` into halves."""

    kind = "channelslice"
    start: int
    stop: int

    def output_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != 3:
            raise shape_error(self, in_shape, "expected a (C, H, W) volume")
        if not 0 <= self.start < self.stop <= in_shape[0]:
            raise shape_error(self, in_shape, f"need 0 <= start < stop <= channels {in_shape[0]}")
        return (self.stop - self.start, *in_shape[1:])

    def forward(self, x, params, rng=None):
        self.check_input(x)
        return x[:, self.start:self.stop], x.shape

    def backward(self, dout, cache):
        dx = np.zeros(cache, dtype=dout.dtype)
        dx[:, self.start:self.stop] = dout
        return dx, {}
