"""The batch queue on its own, with a fake compute function in place of onnxruntime.

The fake doubles its input (a new array, as a real session returns) and records every batch it
saw, so each test can check both what callers got back and how the work was grouped.
"""
from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from service import idle
from service.batching import BatchObserver, BatchQueue, BatchSettings
from service.errors import BatchFailed, DeadlineExceeded, InvalidInput, QueueFull, RequestTooLarge, ShuttingDown


class FakeModel:
    """compute(instance, batch) -> 2 * batch; can be held shut to let requests pile up."""

    def __init__(self, fail_on: set[int] | None = None):
        self.batches: list[np.ndarray] = []
        self.instances: list[int] = []
        self.threads: set[int] = set()
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Semaphore(0)
        self.fail_on = fail_on or set()
        self.lock = threading.Lock()

    def __call__(self, instance: int, batch: np.ndarray) -> np.ndarray:
        with self.lock:
            number = len(self.batches)
            self.batches.append(batch.copy())
            self.instances.append(instance)
            self.threads.add(threading.get_ident())
        self.started.release()
        assert self.gate.wait(10), "test gate never opened"
        if number in self.fail_on:
            raise RuntimeError(f"injected fault in batch {number}")
        return batch * 2.0

    @property
    def sizes(self) -> list[int]:
        return [len(b) for b in self.batches]

    async def wait_started(self, count: int = 1) -> None:
        for _ in range(count):
            assert await asyncio.to_thread(self.started.acquire, True, 10), "compute never started"


class CountingObserver(BatchObserver):
    def __init__(self):
        self.depth = 0
        self.max_depth = 0
        self.waits: list[float] = []
        self.done: list[int] = []

    def queue_depth(self, delta_images, level=0):
        self.depth += delta_images
        self.max_depth = max(self.max_depth, self.depth)

    def queue_wait(self, seconds, level=0):
        self.waits.append(seconds)

    def batch_done(self, images, compute_seconds):
        assert compute_seconds >= 0
        self.done.append(images)


def images(k: int, seed: int, shape=(3, 4, 4)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((k, *shape)).astype(np.float32)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def hold(model: FakeModel, queue: BatchQueue) -> asyncio.Task:
    """Occupy the (single) instance with one request so that the next ones wait in the queue."""
    model.gate.clear()
    task = asyncio.create_task(queue.submit(images(1, seed=999)))
    await model.wait_started()
    return task


async def until(predicate, timeout=5.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "condition never became true"
        await asyncio.sleep(0.001)


def test_settings_reject_bad_values_naming_the_field():
    with pytest.raises(ValueError, match="max_batch_size.*got 0"):
        BatchSettings(max_batch_size=0)
    with pytest.raises(ValueError, match="max_queue_delay_ms.*got -1"):
        BatchSettings(max_queue_delay_ms=-1)
    with pytest.raises(ValueError, match=r"preferred_batch_sizes.*\[4, 100\]"):
        BatchSettings(max_batch_size=64, preferred_batch_sizes=(4, 100))
    with pytest.raises(ValueError, match="max_queue_size.*got 8"):
        BatchSettings(max_batch_size=16, max_queue_size=8)
    assert BatchSettings(preferred_batch_sizes=(8, 4, 8)).preferred_batch_sizes == (4, 8)


def test_single_request_runs_at_once_off_the_event_loop():
    model = FakeModel()

    async def main():
        queue = BatchQueue(model, BatchSettings(max_batch_size=8), name="m")
        x = images(3, seed=1)
        out = await queue.submit(x)
        await queue.close()
        return x, out

    x, out = run(main())
    np.testing.assert_array_equal(out, 2 * x)
    assert model.sizes == [3]
    assert threading.get_ident() not in model.threads


def test_batches_form_under_load_from_whole_requests_up_to_max_batch_size():
    model = FakeModel()
    observer = CountingObserver()

    async def main():
        queue = BatchQueue(model, BatchSettings(max_batch_size=8), name="m", observer=observer)
        first = await hold(model, queue)
        sizes = [3, 2, 2, 4, 1, 5]
        xs = [images(k, seed=i) for i, k in enumerate(sizes)]
        tasks = [asyncio.create_task(queue.submit(x)) for x in xs]
        await until(lambda: queue.queued_images == sum(sizes))
        model.gate.set()
        outs = await asyncio.gather(first, *tasks)
        await queue.close()
        return xs, outs[1:]

    xs, outs = run(main())
    for x, out in zip(xs, outs):
        np.testing.assert_array_equal(out, 2 * x)
    # FIFO, whole requests: 3+2+2 = 7 (the 4 would make 11 > 8), then 4+1 = 5 (+5 > 8), then 5.
    assert model.sizes == [1, 7, 5, 5]
    assert observer.done == model.sizes
    assert observer.depth == 0 and observer.max_depth == 17
    assert len(observer.waits) == 7


def test_every_caller_gets_exactly_its_own_rows_among_many_concurrent_callers():
    model = FakeModel()

    async def main():
        queue = BatchQueue(model, BatchSettings(max_batch_size=16, instances=2), name="m")
        xs = [images(1 + i % 5, seed=i) for i in range(300)]
        outs = await asyncio.gather(*(queue.submit(x) for x in xs))
        await queue.close()
        return xs, outs

    xs, outs = run(main())
    for x, out in zip(xs, outs):
        np.testing.assert_array_equal(out, 2 * x)
    assert sum(model.sizes) == sum(len(x) for x in xs)
    assert max(model.sizes) > 1 and max(model.sizes) <= 16


def test_multi_request_batches_are_assembled_in_one_reused_array():
    model = FakeModel()
    seen = []

    def compute(instance, batch):
        seen.append((batch.__array_interface__["data"][0], len(batch)))
        return model(instance, batch)

    async def main():
        queue = BatchQueue(compute, BatchSettings(max_batch_size=8), name="m")
        for round_ in range(2):
            first = await hold(model, queue)
            tasks = [asyncio.create_task(queue.submit(images(2, seed=10 * round_ + i))) for i in range(3)]
            await until(lambda: queue.queued_images == 6)
            model.gate.set()
            await asyncio.gather(first, *tasks)
        await queue.close()

    run(main())
    multi = [address for address, size in seen if size == 6]
    assert len(multi) == 2 and multi[0] == multi[1]


def test_request_larger_than_max_batch_size_and_empty_request_are_rejected():
    model = FakeModel()

    async def main():
        queue = BatchQueue(model, BatchSettings(max_batch_size=4), name="m")
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
        queue = BatchQueue(model, BatchSettings(max_batch_size=4, max_queue_size=6), name="m")
        first = await hold(model, queue)
        waiting = [asyncio.create_task(queue.submit(images(3, seed=i))) for i in range(2)]
        await until(lambda: queue.queued_images == 6)
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
        queue = BatchQueue(model, BatchSettings(max_batch_size=4), name="m", observer=observer)
        first = await hold(model, queue)
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
        queue = BatchQueue(model, BatchSettings(max_batch_size=8), name="m")
        first = await hold(model, queue)
        gone = asyncio.create_task(queue.submit(images(3, seed=1)))
        kept = asyncio.create_task(queue.submit(images(2, seed=2)))
        await until(lambda: queue.queued_images == 5)
        gone.cancel()
        await asyncio.sleep(0)
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
        queue = BatchQueue(model, BatchSettings(max_batch_size=8), name="m")
        first = await hold(model, queue)
        doomed = [asyncio.create_task(queue.submit(images(1, seed=i))) for i in range(3)]
        await until(lambda: queue.queued_images == 3)
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


def test_max_queue_delay_waits_for_a_fuller_batch():
    model = FakeModel()

    async def main(delay_ms):
        queue = BatchQueue(model, BatchSettings(max_batch_size=4, max_queue_delay_ms=delay_ms), name="m")
        a = asyncio.create_task(queue.submit(images(1, seed=1)))
        await asyncio.sleep(0.02)
        b = asyncio.create_task(queue.submit(images(1, seed=2)))
        await asyncio.gather(a, b)
        await queue.close()

    run(main(delay_ms=0))
    assert model.sizes == [1, 1]
    model.batches.clear()
    run(main(delay_ms=300))  # 2 of 4 images: the batch never fills, so the delay runs out
    assert model.sizes == [2]


def test_max_queue_delay_stops_waiting_once_the_batch_is_full():
    model = FakeModel()

    async def main():
        queue = BatchQueue(model, BatchSettings(max_batch_size=4, max_queue_delay_ms=60_000), name="m")
        outs = await asyncio.gather(*(queue.submit(images(2, seed=i)) for i in range(2)))
        await queue.close()
        return outs

    run(main())  # would hang for a minute (and time out) if the full batch kept waiting
    assert model.sizes == [4]


def test_preferred_batch_sizes_cap_a_batch_at_the_largest_one_the_queue_fills():
    model = FakeModel()

    async def main():
        queue = BatchQueue(model, BatchSettings(max_batch_size=16, preferred_batch_sizes=(4,)), name="m")
        first = await hold(model, queue)
        tasks = [asyncio.create_task(queue.submit(images(1, seed=i))) for i in range(7)]
        await until(lambda: queue.queued_images == 7)
        model.gate.set()
        await asyncio.gather(first, *tasks)
        await queue.close()

    run(main())
    assert model.sizes == [1, 4, 3]


def test_requests_of_different_image_sizes_are_not_batched_together():
    model = FakeModel()

    async def main():
        queue = BatchQueue(model, BatchSettings(max_batch_size=16), name="m")
        first = await hold(model, queue)
        xs = [images(1, seed=1, shape=(3, 4, 4)), images(1, seed=2, shape=(3, 4, 4)),
              images(2, seed=3, shape=(3, 6, 6)), images(1, seed=4, shape=(3, 4, 4))]
        tasks = [asyncio.create_task(queue.submit(x)) for x in xs]
        await until(lambda: queue.queued_images == 5)
        model.gate.set()
        outs = await asyncio.gather(*tasks)
        await first
        await queue.close()
        return xs, outs

    xs, outs = run(main())
    for x, out in zip(xs, outs):
        np.testing.assert_array_equal(out, 2 * x)
    assert model.sizes == [1, 2, 2, 1]


def test_instances_compute_concurrently():
    barrier = threading.Barrier(2, timeout=10)

    def compute(instance, batch):
        barrier.wait()  # breaks (and fails the batch) unless both instances are inside at once
        return batch + instance

    async def main():
        queue = BatchQueue(compute, BatchSettings(max_batch_size=1, instances=2), name="m")
        outs = await asyncio.gather(queue.submit(images(1, seed=1)), queue.submit(images(1, seed=2)))
        await queue.close()
        return outs

    outs = run(main())
    offsets = sorted(float((out - x).mean()) for out, x in zip(outs, (images(1, seed=1), images(1, seed=2))))
    assert offsets == pytest.approx([0.0, 1.0])


def test_close_drains_queued_work_then_refuses_new_requests():
    model = FakeModel()

    async def main():
        queue = BatchQueue(model, BatchSettings(max_batch_size=2), name="m")
        first = await hold(model, queue)
        tasks = [asyncio.create_task(queue.submit(images(2, seed=i))) for i in range(3)]
        await until(lambda: queue.queued_images == 6)
        closing = asyncio.create_task(queue.close(grace=10))
        await asyncio.sleep(0.01)
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
        queue = BatchQueue(model, BatchSettings(max_batch_size=2), name="m")
        first = await hold(model, queue)
        queued = asyncio.create_task(queue.submit(images(2, seed=1)))
        await until(lambda: queue.queued_images == 2)
        await queue.close(grace=0.05)
        results = await asyncio.gather(first, queued, return_exceptions=True)
        model.gate.set()
        return results

    results = run(main())
    assert all(isinstance(r, ShuttingDown) for r in results)
    assert model.sizes == [1]


def test_on_an_idle_loop_requests_that_arrive_together_form_one_batch_and_a_lone_one_runs_at_once():
    """On the server's loop (service.idle) a free instance starts only once every arrived request is queued."""
    model = FakeModel()

    async def main():
        queue = BatchQueue(model, BatchSettings(max_batch_size=8), name="m")
        lone = images(2, seed=10)
        lone_out = await queue.submit(lone)
        xs = [images(k, seed=i) for i, k in enumerate([1, 3, 2])]
        outs = await asyncio.gather(*(queue.submit(x) for x in xs))
        await queue.close()
        return lone, lone_out, xs, outs

    lone, lone_out, xs, outs = idle.run(asyncio.wait_for(main(), 30))
    np.testing.assert_array_equal(lone_out, 2 * lone)
    for x, out in zip(xs, outs):
        np.testing.assert_array_equal(out, 2 * x)
    assert model.sizes == [2, 6]  # on a plain asyncio loop the free instance would take the first alone: [2, 1, 5]


def test_on_a_plain_loop_the_first_request_starts_at_once():
    """The contrast of the test above: without the idle hook the queue dispatches on every arrival."""
    model = FakeModel()

    async def main():
        queue = BatchQueue(model, BatchSettings(max_batch_size=8), name="m")
        xs = [images(k, seed=i) for i, k in enumerate([1, 3, 2])]
        await asyncio.gather(*(queue.submit(x) for x in xs))
        await queue.close()

    run(main())
    assert model.sizes[0] == 1 and sum(model.sizes) == 6
