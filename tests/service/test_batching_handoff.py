"""An instance that finishes while a full batch waits takes it in its own thread (BatchQueue's
hand-off): the next batch starts while the event loop is blocked, in priority order, and close()
answers a batch a thread took.

Each test blocks the event loop's thread on purpose (a synchronous wait inside a coroutine), so
whatever happens meanwhile happened without the loop.
"""
from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from batching_fakes import FakeModel, hold, images, run, until

from service.batching import BatchQueue
from service.errors import ShuttingDown
from service.priority import PrioritySettings
from service.settings import BatchSettings


def tagged(tag: float, k: int = 1) -> np.ndarray:
    return np.full((k, 3, 4, 4), tag, dtype=np.float32)


def finish_held_batch_with_loop_blocked(max_batch_size: int, waiting: int, block_s: float):
    """One instance holds a batch of 1 while ``waiting`` images queue; then it finishes while the
    loop thread is blocked for up to ``block_s``. Returns (whether the next batch started while
    the loop was blocked, the batch sizes computed, the waiting caller's outputs)."""
    model = FakeModel()

    async def main():
        queue = BatchQueue(model, BatchSettings(max_batch_size=max_batch_size), name="m")
        first = await hold(model, queue)
        task = asyncio.create_task(queue.submit(images(waiting, seed=1)))
        await until(lambda: queue.queued_images == waiting)
        model.gate.set()
        started = model.started.acquire(timeout=block_s)  # blocks the loop: only the thread can start it
        _, out = await asyncio.gather(first, task)
        await queue.close()
        return started, out

    started, out = run(main())
    return started, model.sizes, out


def test_a_full_waiting_batch_starts_while_the_loop_is_blocked():
    started, sizes, out = finish_held_batch_with_loop_blocked(max_batch_size=2, waiting=2, block_s=10)
    assert started, "the waiting full batch did not start until the event loop ran"
    assert sizes == [1, 2]
    np.testing.assert_array_equal(out, images(2, seed=1) * 2)


def test_a_partial_batch_waits_for_the_loop():
    """Below a full batch the hand-off leaves the choice to the loop (which may wait for more)."""
    started, sizes, out = finish_held_batch_with_loop_blocked(max_batch_size=4, waiting=1, block_s=0.5)
    assert not started
    assert sizes == [1, 1]
    np.testing.assert_array_equal(out, images(1, seed=1) * 2)


def test_the_hand_off_takes_the_highest_level_first():
    model = FakeModel()

    async def main():
        priority = PrioritySettings(priority_levels=2, default_priority_level=2)
        queue = BatchQueue(model, BatchSettings(max_batch_size=2, priority=priority), name="m")
        first = await hold(model, queue)
        sent = [asyncio.create_task(queue.submit(tagged(t), priority=p)) for t, p in ((1, 2), (2, 2), (3, 1))]
        await until(lambda: queue.queued_images == 3)
        model.gate.set()
        assert model.started.acquire(timeout=10)  # the loop blocked
        outs = await asyncio.gather(first, *sent)
        await queue.close()
        return outs

    outs = run(main())
    assert [[float(row[0, 0, 0]) for row in b] for b in model.batches[1:]] == [[3, 1], [2]]
    for t, out in zip((1, 2, 3), outs[1:]):
        np.testing.assert_array_equal(out, tagged(t) * 2)


class SteppedModel:
    """compute() that lets batch n through only once ``release(n)`` was called."""

    def __init__(self):
        self.started = threading.Semaphore(0)
        self._gates = [threading.Event() for _ in range(8)]
        self.calls = 0

    def release(self, n: int) -> None:
        self._gates[n].set()

    def __call__(self, instance: int, batch: np.ndarray) -> np.ndarray:
        n, self.calls = self.calls, self.calls + 1
        self.started.release()
        assert self._gates[n].wait(10)
        return batch * 2.0


def test_close_answers_a_batch_a_thread_took_and_is_computing():
    model = SteppedModel()

    async def main():
        queue = BatchQueue(model, BatchSettings(max_batch_size=2), name="m")
        first = asyncio.create_task(queue.submit(images(1, seed=0)))
        assert await asyncio.to_thread(model.started.acquire, True, 10)
        taken = asyncio.create_task(queue.submit(images(2, seed=1)))
        await until(lambda: queue.queued_images == 2)
        model.release(0)
        assert model.started.acquire(timeout=10)  # the loop blocked: the thread took the waiting batch
        await queue.close(grace=0)  # the second batch still computes
        model.release(1)
        return await asyncio.gather(first, taken, return_exceptions=True)

    first, taken = run(main())
    np.testing.assert_array_equal(first, images(1, seed=0) * 2)
    assert isinstance(taken, ShuttingDown) and "while this request was computing" in str(taken)


@pytest.mark.parametrize("instances", [1, 3])
def test_many_concurrent_callers_each_get_their_own_rows(instances):
    """The hand-off under contention: every caller's rows come back, none twice, depth back to 0."""
    model = FakeModel()

    async def main():
        queue = BatchQueue(model, BatchSettings(max_batch_size=4, instances=instances), name="m")

        async def caller(i: int) -> bool:
            ok = True
            for j in range(20):
                x = images(1 + (i + j) % 3, seed=1000 * i + j)
                ok &= bool(np.array_equal(await queue.submit(x), x * 2))
            return ok

        results = await asyncio.gather(*(caller(i) for i in range(16)))
        depth = queue.queued_images
        await queue.close()
        return results, depth

    results, depth = run(main())
    assert all(results) and depth == 0
    assert sum(model.sizes) == sum(1 + (i + j) % 3 for i in range(16) for j in range(20))
