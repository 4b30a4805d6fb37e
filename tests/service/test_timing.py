"""service.timing: the Server-Timing value a reply carries, and the batch queue filling it in."""
from __future__ import annotations

import asyncio

import pytest
from batching_fakes import FakeModel, hold, images, run, until

from service.batching import BatchQueue
from service.settings import BatchSettings
from service.timing import RequestTiming


def test_the_header_reads_back_in_seconds():
    timing = RequestTiming(queue_s=0.0012345, compute_s=0.004, total_s=0.0061)
    assert timing.header() == "queue;dur=1.234, compute;dur=4.000, total;dur=6.100"
    back = RequestTiming.parse("infer;dur=7.5, " + timing.header())
    assert (back.queue_s, back.compute_s, back.total_s) == pytest.approx((0.001234, 0.004, 0.0061))


def test_a_malformed_entry_names_what_was_expected():
    with pytest.raises(ValueError, match="server-timing: expected entries like 'queue;dur=1.5', received 'queue=3'"):
        RequestTiming.parse("queue=3")


def test_the_queue_fills_in_the_wait_behind_a_busy_instance():
    model = FakeModel()

    async def main():
        queue = BatchQueue(model, BatchSettings(max_batch_size=4), name="m")
        first = await hold(model, queue)
        timing = RequestTiming()
        waiting = asyncio.create_task(queue.submit(images(1, seed=1), timing=timing))
        await until(lambda: queue.queued_images == 1)
        await asyncio.sleep(0.05)  # the instance stays busy at least this long: a wait to measure, not a sync
        model.gate.set()
        await asyncio.gather(first, waiting)
        await queue.close()
        return timing

    timing = run(main())
    assert timing.queue_s >= 0.05 and timing.compute_s > 0
    assert timing.total_s >= timing.queue_s + timing.compute_s
