"""The batch queue on its own, forming batches: whole requests, FIFO, up to the size limits, one
reused array, the delay and the preferred sizes, concurrent instances, settling on the idle loop.

The fake compute (batching_fakes.FakeModel) doubles its input and records every batch it saw, so
each test can check both what callers got back and how the work was grouped.
"""
from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from batching_fakes import CountingObserver, FakeModel, held_queue, hold, images, pile_up, queue_of, run, until

from service import idle
from service.settings import BatchSettings


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
        queue = queue_of(model, max_batch_size=8)
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
        queue, first = await held_queue(model, observer=observer, max_batch_size=8)
        sizes = [3, 2, 2, 4, 1, 5]
        xs = [images(k, seed=i) for i, k in enumerate(sizes)]
        tasks = await pile_up(queue, xs)
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
        queue = queue_of(model, max_batch_size=16, instances=2)
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
        queue = queue_of(compute, max_batch_size=8)
        for round_ in range(2):
            first = await hold(model, queue)
            tasks = await pile_up(queue, [images(2, seed=10 * round_ + i) for i in range(3)])
            model.gate.set()
            await asyncio.gather(first, *tasks)
        await queue.close()

    run(main())
    multi = [address for address, size in seen if size == 6]
    assert len(multi) == 2 and multi[0] == multi[1]


def test_max_queue_delay_waits_for_a_fuller_batch():
    model = FakeModel()

    async def main(delay_ms):
        queue = queue_of(model, max_batch_size=4, max_queue_delay_ms=delay_ms)
        a = asyncio.create_task(queue.submit(images(1, seed=1)))
        if delay_ms:
            await until(lambda: queue.queued_images == 1)  # a waits in the queue for company
        else:
            await model.wait_started()  # a computes alone at once
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
        queue = queue_of(model, max_batch_size=4, max_queue_delay_ms=60_000)
        outs = await asyncio.gather(*(queue.submit(images(2, seed=i)) for i in range(2)))
        await queue.close()
        return outs

    run(main())  # would hang for a minute (and time out) if the full batch kept waiting
    assert model.sizes == [4]


def test_preferred_batch_sizes_cap_a_batch_at_the_largest_one_the_queue_fills():
    model = FakeModel()

    async def main():
        queue, first = await held_queue(model, max_batch_size=16, preferred_batch_sizes=(4,))
        tasks = await pile_up(queue, [images(1, seed=i) for i in range(7)])
        model.gate.set()
        await asyncio.gather(first, *tasks)
        await queue.close()

    run(main())
    assert model.sizes == [1, 4, 3]


def test_requests_of_different_image_sizes_are_not_batched_together():
    model = FakeModel()

    async def main():
        queue, first = await held_queue(model, max_batch_size=16)
        xs = [images(1, seed=1, shape=(3, 4, 4)), images(1, seed=2, shape=(3, 4, 4)),
              images(2, seed=3, shape=(3, 6, 6)), images(1, seed=4, shape=(3, 4, 4))]
        tasks = await pile_up(queue, xs)
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
        queue = queue_of(compute, max_batch_size=1, instances=2)
        outs = await asyncio.gather(queue.submit(images(1, seed=1)), queue.submit(images(1, seed=2)))
        await queue.close()
        return outs

    outs = run(main())
    offsets = sorted(float((out - x).mean()) for out, x in zip(outs, (images(1, seed=1), images(1, seed=2))))
    assert offsets == pytest.approx([0.0, 1.0])


def test_on_an_idle_loop_requests_that_arrive_together_form_one_batch_and_a_lone_one_runs_at_once():
    """On the server's loop (service.idle) a free instance starts only once every arrived request is queued."""
    model = FakeModel()

    async def main():
        queue = queue_of(model, max_batch_size=8)
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
    assert model.sizes == [2, 6]  # the three arrived before the loop went idle: one batch


@pytest.mark.parametrize("loop_kind", ["plain", "idle"])
def test_a_lone_request_starts_at_once_on_a_plain_loop_and_once_the_idle_loop_settles(loop_kind):
    """Without the idle hook every push settles the scheduler, so a free instance starts the
    request while the loop is still busy (here: blocked); on the server's loop it waits for the
    loop to go idle, when the requests that arrived together are all in."""
    model = FakeModel()

    async def main():
        queue = queue_of(model, max_batch_size=8)
        task = asyncio.create_task(queue.submit(images(1, seed=1)))
        await asyncio.sleep(0)  # the task pushes its request and waits
        started_while_busy = model.started.acquire(timeout=0.5 if loop_kind == "idle" else 10)  # blocks the loop
        if not started_while_busy:
            await model.wait_started()
        out = await task
        await queue.close()
        return started_while_busy, out

    runner = run if loop_kind == "plain" else (lambda coro: idle.run(asyncio.wait_for(coro, 30)))
    started_while_busy, out = runner(main())
    assert started_while_busy == (loop_kind == "plain")
    np.testing.assert_array_equal(out, 2 * images(1, seed=1))
