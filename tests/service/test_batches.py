"""Batch merge and split on their own: rows in order, each request's span, outputs cut back exactly."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest

from service.batches import buffer_for, merge, spans, split


def rows(k: int, start: int, shape=(2, 3)) -> np.ndarray:
    return np.arange(start, start + k * int(np.prod(shape)), dtype=np.float32).reshape(k, *shape)


def test_spans_are_consecutive_row_ranges():
    assert spans([2, 1, 3]) == [slice(0, 2), slice(2, 3), slice(3, 6)]
    assert spans([]) == []


def test_a_lone_request_is_its_own_batch_without_a_copy():
    x = rows(3, 0)
    batch, where = merge([x])
    assert batch is x and where == [slice(0, 3)]


def test_merge_stacks_rows_in_order_into_the_buffer_when_it_fits():
    xs = [rows(2, 0), rows(1, 100), rows(3, 200)]
    buffer = np.full((8, 2, 3), -1, dtype=np.float32)
    batch, where = merge(xs, buffer)
    assert np.shares_memory(batch, buffer) and batch.shape == (6, 2, 3)
    np.testing.assert_array_equal(batch, np.vstack([x.reshape(-1, 2, 3) for x in xs]))
    for x, span in zip(xs, where):
        np.testing.assert_array_equal(batch[span], x)


@pytest.mark.parametrize("buffer", [None, np.empty((4, 2, 3), np.float32), np.empty((8, 3, 2), np.float32),
                                    np.empty((8, 2, 3), np.float64)])
def test_merge_allocates_when_the_buffer_is_missing_small_or_of_another_kind(buffer):
    xs = [rows(3, 0), rows(2, 50)]
    batch, _ = merge(xs, buffer)
    assert buffer is None or not np.shares_memory(batch, buffer)
    assert batch.dtype == np.float32
    np.testing.assert_array_equal(batch, np.concatenate(xs))


def test_buffer_for_keeps_a_fitting_buffer_and_sizes_a_new_one():
    like = rows(1, 0)
    held = np.empty((16, 2, 3), np.float32)
    assert buffer_for(held, like, 16) is held
    fresh = buffer_for(held, like, 17)
    assert fresh.shape == (17, 2, 3) and fresh.dtype == np.float32


class Pair(NamedTuple):
    scores: np.ndarray
    labels: np.ndarray


def test_split_gives_each_request_its_rows_of_an_array_or_of_every_tuple_field():
    outputs = np.arange(12).reshape(6, 2)
    where = spans([2, 1, 3])
    parts = split(outputs, where)
    assert [p.tolist() for p in parts] == [outputs[0:2].tolist(), outputs[2:3].tolist(), outputs[3:6].tolist()]

    pair = Pair(np.arange(6.0), np.arange(6) * 10)
    parts = split(pair, where)
    assert all(type(p) is Pair for p in parts)
    assert [p.labels.tolist() for p in parts] == [[0, 10], [20], [30, 40, 50]]
    plain = split((np.arange(6), np.arange(6)), where)
    assert type(plain[0]) is tuple and plain[2][1].tolist() == [3, 4, 5]


def test_split_refuses_outputs_without_one_row_per_batch_row():
    with pytest.raises(ValueError, match=r"compute returned \[5\] rows for a batch of 6"):
        split(np.zeros((5, 2)), spans([2, 4]))
    with pytest.raises(ValueError, match=r"\[5, 6\] rows"):
        split(Pair(np.zeros(6), np.zeros(5)), spans([6]))
