"""The batch queue with priority levels and queue policies (service.priority inside
service.batching), and the statistics it reports, with the fake model of test_batching.

Requests are told apart by their pixel values (request i is all i), so the batches the fake
model saw show the order the queue took them in.
"""
from __future__ import annotations

import asyncio

import numpy as np
import pytest
from batching_fakes import FakeModel, hold, run, until

from service.batching import BatchQueue, BatchSettings
from service.errors import DeadlineExceeded, QueueFull
from service.priority import DELAY, PrioritySettings, QueuePolicy
from service.statistics import VersionStatistics


def tagged(tag: float, k: int = 1) -> np.ndarray:
    return np.full((k, 3, 4, 4), tag, dtype=np.float32)


def tags(model: FakeModel) -> list[list[float]]:
    return [[float(row[0, 0, 0]) for row in batch] for batch in model.batches[1:]]  # after the holding request


def settings(levels=3, default=3, default_policy=QueuePolicy(), **per_level) -> BatchSettings:
    policies = {int(k[1:]): v for k, v in per_level.items()}
    return BatchSettings(max_batch_size=2, max_queue_size=64,
                         priority=PrioritySettings(levels, default, default_policy, policies))


def test_batches_take_the_highest_level_first_then_fill_with_lower_ones():
    model = FakeModel()

    async def main():
        queue = BatchQueue(model, settings(), name="m")
        first = await hold(model, queue)
        sent = [asyncio.create_task(queue.submit(tagged(t), priority=p))
                for t, p in ((1, 3), (2, 2), (3, 1), (4, 0), (5, 1))]
        await until(lambda: queue.queued_images == 5)
        model.gate.set()
        outs = await asyncio.gather(first, *sent)
        await queue.close()
        return outs

    outs = run(main())
    assert tags(model) == [[3, 5], [2, 1], [4]]  # level 1, level 2 then level 3 (0 = default 3) in arrival order
    for t, out in zip((1, 2, 3, 4, 5), outs[1:]):
        np.testing.assert_array_equal(out, tagged(t) * 2)


def test_a_full_level_is_refused_like_a_full_queue_naming_the_level():
    model = FakeModel()

    async def main():
        queue = BatchQueue(model, settings(l1=QueuePolicy(max_queue_size=2)), name="m")
        first = await hold(model, queue)
        waiting = asyncio.create_task(queue.submit(tagged(1, 2), priority=1))
        await until(lambda: queue.queued_images == 2)
        with pytest.raises(QueueFull, match=r"model m: priority level 1 full .*max_queue_size=2, request has 1"):
            await queue.submit(tagged(2), priority=1)
        other = asyncio.create_task(queue.submit(tagged(3), priority=2))  # another level still has room
        await until(lambda: queue.queued_images == 3)
        model.gate.set()
        await asyncio.gather(first, waiting, other)
        await queue.close()

    run(main())
    assert tags(model) == [[1, 1], [3]]


def test_reject_answers_deadline_exceeded_without_computing():
    model = FakeModel()

    async def main():
        queue = BatchQueue(model, settings(l2=QueuePolicy(default_timeout_us=20_000)), name="m")
        first = await hold(model, queue)
        with pytest.raises(DeadlineExceeded, match=r"deadline passed after 20.0 ms in the queue \(priority level 2\)"):
            await queue.submit(tagged(1), priority=2)
        # a longer request timeout cannot exceed the policy's (allow_timeout_override off)
        with pytest.raises(DeadlineExceeded, match="after 20.0 ms"):
            await queue.submit(tagged(2), timeout=30.0, priority=2)
        assert queue.queued_images == 0
        model.gate.set()
        await first
        await queue.close()

    run(main())
    assert tags(model) == []


def test_delay_lets_requests_that_have_not_timed_out_go_first():
    model = FakeModel()
    delay = QueuePolicy(default_timeout_us=1, allow_timeout_override=True, timeout_action=DELAY)

    async def main():
        queue = BatchQueue(model, settings(l2=delay), name="m")
        first = await hold(model, queue)
        old = asyncio.create_task(queue.submit(tagged(1, 2), priority=2))  # times out after 1 us: delayed
        await until(lambda: queue.queued_images == 2)
        new = asyncio.create_task(queue.submit(tagged(2, 2), timeout=60.0, priority=2))  # override: 60 s
        low = asyncio.create_task(queue.submit(tagged(3, 2), priority=3))
        await until(lambda: queue.queued_images == 6)
        model.gate.set()
        await asyncio.gather(first, old, new, low)  # the delayed one is still computed
        await queue.close()

    run(main())
    assert tags(model) == [[2, 2], [1, 1], [3, 3]]  # yields within its level, still ahead of level 3


def test_levels_off_ignores_priorities_and_keeps_one_fifo():
    model = FakeModel()

    async def main():
        queue = BatchQueue(model, BatchSettings(max_batch_size=2, max_queue_size=64), name="m")
        first = await hold(model, queue)
        sent = [asyncio.create_task(queue.submit(tagged(t), priority=p)) for t, p in ((1, 3), (2, 1), (3, 2))]
        await until(lambda: queue.queued_images == 3)
        model.gate.set()
        await asyncio.gather(first, *sent)
        await queue.close()

    run(main())
    assert tags(model) == [[1, 2], [3]]


def test_statistics_are_exact_through_the_queue():
    model = FakeModel()
    stats = VersionStatistics("m", 1)

    async def main():
        queue = BatchQueue(model, BatchSettings(max_batch_size=4, max_queue_size=64), name="m", observer=stats)
        first = await hold(model, queue)
        sent = [asyncio.create_task(queue.submit(tagged(t, 2))) for t in range(5)]
        await until(lambda: queue.queued_images == 10)
        with pytest.raises(DeadlineExceeded):
            await queue.submit(tagged(9), timeout=0.01)
        with pytest.raises(DeadlineExceeded):
            await queue.submit(tagged(9), timeout=0)  # refused before queueing: a failure as well
        model.gate.set()
        await asyncio.gather(first, *sent)
        await queue.close()

    run(main())
    assert model.sizes == [1, 4, 4, 2]
    assert (stats.inference_count, stats.execution_count) == (11, 4)
    assert {size: b.compute_infer.count for size, b in stats.batches.items()} == {1: 1, 4: 2, 2: 1}
    assert stats.success.count == stats.queue.count == stats.compute_infer.count == 6
    assert stats.fail.count == 2 and stats.fail.ns >= 10_000_000
    assert stats.success.ns >= stats.queue.ns > 0
    b = {size: stats.batches[size].compute_infer.ns for size in stats.batches}
    assert stats.compute_infer.ns == b[1] + 2 * b[4] + b[2]  # each request adds its batch's time
