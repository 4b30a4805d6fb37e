"""The batch queue's limits and endings: rejected sizes, a full queue, deadlines, cancelled
callers, a failing compute, and closing with and without time to drain."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest
from batching_fakes import CountingObserver, FakeModel, held_queue, images, pile_up, queue_of, run, until

from service.errors import BatchFailed, DeadlineExceeded, InvalidInput, QueueFull, RequestTooLarge, ShuttingDown


def test_request_larger_than_max_batch_size_and_empty_request_are_rejected():
    model = FakeModel()

    async def main():
        queue = queue_of(model, max_batch_size=4)
        with pytest.raises(RequestTooLarge, match="max_batch_size=4.*received 5"):
            await queue.submit(images(5, seed=0))
        with pytest.raises(InvalidInput, match="at least 1 image, received 0"):
            await queue.submit(images(0, seed=0))
        np.testing.assert_array_equal(await queue.submit(images(4, seed=1)), 2 * images(4, seed=1))
        await queue.close()

    run(main())
    assert model.sizes == [4]


def test_full_queue_answers_at_once_and_recovers():
    model = FakeModel()

    async def main():
        queue, first = await held_queue(model, max_batch_size=4, max_queue_size=6)
        waiting = await pile_up(queue, [images(3, seed=i) for i in range(2)])
        with pytest.raises(QueueFull, match="6 images waiting, max_queue_size=6, request has 1"):
            await queue.submit(images(1, seed=5))
        model.gate.set()
        await asyncio.gather(first, *waiting)
        out = await queue.submit(images(1, seed=5))
        await queue.close()
        return out

    np.testing.assert_array_equal(run(main()), 2 * images(1, seed=5))


def test_deadline_passing_in_the_queue_answers_without_computing():
    model = FakeModel()
    observer = CountingObserver()

    async def main():
        queue, first = await held_queue(model, observer=observer, max_batch_size=4)
        late = images(2, seed=7)
        with pytest.raises(DeadlineExceeded, match="deadline passed after"):
            await queue.submit(late, timeout=0.05)
        assert queue.queued_images == 0
        with pytest.raises(DeadlineExceeded):
            await queue.submit(late, timeout=0)
        model.gate.set()
        await first
        await queue.close()
        return late

    late = run(main())
    assert model.sizes == [1]
    assert not any(np.array_equal(b, late) for b in model.batches)
    assert observer.depth == 0


def test_cancelled_caller_is_removed_from_the_queue():
    model = FakeModel()

    async def main():
        queue, first = await held_queue(model, max_batch_size=8)
        gone, kept = await pile_up(queue, [images(3, seed=1), images(2, seed=2)])
        gone.cancel()
        await asyncio.wait({gone})
        assert queue.queued_images == 2
        model.gate.set()
        out = await kept
        await first
        with pytest.raises(asyncio.CancelledError):
            await gone
        await queue.close()
        return out

    np.testing.assert_array_equal(run(main()), 2 * images(2, seed=2))
    assert model.sizes == [1, 2]


def test_compute_error_fails_only_that_batch():
    model = FakeModel(fail_on={1})

    async def main():
        queue, first = await held_queue(model, max_batch_size=8)
        doomed = await pile_up(queue, [images(1, seed=i) for i in range(3)])
        model.gate.set()
        await first
        results = await asyncio.gather(*doomed, return_exceptions=True)
        after = await queue.submit(images(2, seed=9))
        await queue.close()
        return results, after

    results, after = run(main())
    assert all(isinstance(r, BatchFailed) and r.error_id in str(r) for r in results)
    assert len({r.error_id for r in results}) == 1
    np.testing.assert_array_equal(after, 2 * images(2, seed=9))


def test_close_drains_queued_work_then_refuses_new_requests():
    model = FakeModel()

    async def main():
        queue, first = await held_queue(model, max_batch_size=2)
        tasks = await pile_up(queue, [images(2, seed=i) for i in range(3)])
        closing = asyncio.create_task(queue.close(grace=10))
        await until(lambda: queue.closed)
        with pytest.raises(ShuttingDown, match="shutting down"):
            await queue.submit(images(1, seed=0))
        model.gate.set()
        await closing
        return await asyncio.gather(first, *tasks)

    outs = run(main())
    for i, out in enumerate(outs[1:]):
        np.testing.assert_array_equal(out, 2 * images(2, seed=i))


def test_close_after_the_grace_period_fails_what_is_left():
    model = FakeModel()

    async def main():
        queue, first = await held_queue(model, max_batch_size=2)
        (queued,) = await pile_up(queue, [images(2, seed=1)])
        await queue.close(grace=0.05)
        results = await asyncio.gather(first, queued, return_exceptions=True)
        model.gate.set()
        return results

    results = run(main())
    assert all(isinstance(r, ShuttingDown) for r in results)
    assert model.sizes == [1]
