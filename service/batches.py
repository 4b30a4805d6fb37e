"""Batch merge and split as pure functions: the batch queue's arithmetic on rows, kept apart from
its scheduling so each can be read and tested alone.

``merge`` stacks the requests' inputs (rows along axis 0) into one batch and says which rows are
whose; ``split`` hands each request its rows of every output. A compute may return one array or a
tuple (a NamedTuple, say) of arrays with one row per batch row.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def spans(sizes: Sequence[int]) -> list[slice]:
    """The consecutive row ranges of requests of ``sizes`` rows in one batch."""
    out, start = [], 0
    for size in sizes:
        out.append(slice(start, start + size))
        start += size
    return out


def merge(inputs: Sequence[np.ndarray], buffer: np.ndarray | None = None) -> tuple[np.ndarray, list[slice]]:
    """One batch of every request's rows, in order, and each request's row span in it.

    A lone request is its own batch (no copy). Otherwise the rows are copied into the first rows of
    ``buffer`` when it has room and the same item shape and dtype, else into a new array.
    """
    rows = spans([len(x) for x in inputs])
    if len(inputs) == 1:
        return inputs[0], rows
    total = rows[-1].stop
    batch = buffer_for(buffer, inputs[0], total)[:total]
    np.concatenate(inputs, axis=0, out=batch)
    return batch, rows


def buffer_for(buffer: np.ndarray | None, like: np.ndarray, rows: int) -> np.ndarray:
    """``buffer`` if it holds ``rows`` rows of ``like``'s item shape and dtype, else a new such array."""
    if (buffer is not None and len(buffer) >= rows and buffer.shape[1:] == like.shape[1:]
            and buffer.dtype == like.dtype):
        return buffer
    return np.empty((rows, *like.shape[1:]), dtype=like.dtype)


def output_rows(outputs: Any) -> list[int]:
    """The row count of each output array (one entry for a plain array)."""
    return [len(o) for o in outputs] if isinstance(outputs, tuple) else [len(outputs)]


def split(outputs: Any, rows: Sequence[slice]) -> list[Any]:
    """Each request's rows of ``outputs``: arrays for an array, the same tuple type for a tuple.

    Raises ValueError when an output does not have exactly one row per batch row.
    """
    total = rows[-1].stop if rows else 0
    counts = set(output_rows(outputs))
    if counts != {total}:
        raise ValueError(f"compute returned {sorted(counts)} rows for a batch of {total}")
    if isinstance(outputs, tuple):
        make = type(outputs)._make if hasattr(outputs, "_fields") else tuple
        return [make(o[span] for o in outputs) for span in rows]
    return [outputs[span] for span in rows]
