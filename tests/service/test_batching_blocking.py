"""The batch queue from plain threads (a synchronous transport's handlers): ``submit_blocking``
returns each caller's rows, answers a queue timeout without computing, and with a ``ThreadGate``
the requests that arrive while a batch computes wait until every handler thread is blocked in the
queue, then go as one batch."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from batching_fakes import FakeModel, images

from service.batching import BatchQueue, ThreadGate
from service.errors import Abandoned, DeadlineExceeded
from service.settings import BatchSettings


def wait_until(predicate, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition never became true"
        time.sleep(0.001)


def start_callers(queue: BatchQueue, gate: ThreadGate | None, xs: dict[int, np.ndarray],
                  results: dict[int, object]) -> list[threading.Thread]:
    def caller(i: int) -> None:
        if gate is not None:
            gate.enter()
        try:
            results[i] = queue.submit_blocking(xs[i], gate=gate)
        except Exception as exc:
            results[i] = exc
        finally:
            if gate is not None:
                gate.leave()

    threads = [threading.Thread(target=caller, args=(i,)) for i in xs]
    for thread in threads:
        thread.start()
    return threads


@pytest.mark.parametrize("gated", [True, False])
def test_with_a_thread_gate_a_partial_batch_waits_for_the_threads_still_working(gated):
    """A and B wait behind a computing batch while a third handler thread is still decoding C.
    With the gate the instance waits for that thread, and A, B and C go as one batch; without it
    A and B go at once and C alone after them."""
    model = FakeModel()
    queue = BatchQueue(model, BatchSettings(max_batch_size=8), name="m")
    gate = ThreadGate() if gated else None
    results: dict[int, object] = {}
    model.gate.clear()
    threads = start_callers(queue, gate, {0: images(1, seed=0)}, results)
    assert model.started.acquire(timeout=10)
    xs = {1: images(1, seed=1), 2: images(1, seed=2), 3: images(1, seed=3)}
    threads += start_callers(queue, gate, {1: xs[1], 2: xs[2]}, results)
    wait_until(lambda: queue.queued_images == 2)
    if gate is not None:
        gate.enter()  # the thread that is still decoding C
    model.gate.set()
    started_before_c = model.started.acquire(timeout=0.5 if gated else 10)
    threads += start_callers(queue, gate, {3: xs[3]}, results)
    if gate is not None:
        wait_until(lambda: queue.queued_images == 3)
        gate.leave()  # C is decoded (its caller thread queued it)
    for thread in threads:
        thread.join(30)
    assert started_before_c == (not gated)
    assert model.sizes == ([1, 3] if gated else [1, 2, 1])
    for i, x in {0: images(1, seed=0), **xs}.items():
        np.testing.assert_array_equal(results[i], 2 * x)
    assert gate is None or gate.working == 0
    queue.scheduler.stop()


def test_a_blocking_caller_past_its_timeout_is_answered_without_computing():
    model = FakeModel()
    queue = BatchQueue(model, BatchSettings(max_batch_size=8), name="m")
    results: dict[int, object] = {}
    model.gate.clear()
    holder = start_callers(queue, None, {0: images(1, seed=0)}, results)
    assert model.started.acquire(timeout=10)
    with pytest.raises(DeadlineExceeded, match="deadline passed after 50.0 ms in the queue; not computed"):
        queue.submit_blocking(images(2, seed=1), timeout=0.05)
    assert queue.queued_images == 0
    model.gate.set()
    holder[0].join(30)
    np.testing.assert_array_equal(results[0], 2 * images(1, seed=0))
    assert model.sizes == [1]
    queue.scheduler.stop()


def test_an_abandoned_blocking_caller_is_withdrawn_and_released():
    """The transport calls the abandon function it was given (the caller went away): the request
    leaves the queue uncomputed, its thread gets Abandoned and the gate counts it working again
    until its handler ends; called again after the answer it does nothing."""
    model = FakeModel()
    queue = BatchQueue(model, BatchSettings(max_batch_size=8), name="m")
    gate = ThreadGate()
    results: dict[int, object] = {}
    model.gate.clear()
    holder = start_callers(queue, gate, {0: images(1, seed=0)}, results)
    assert model.started.acquire(timeout=10)
    abandon: list = []
    gate.enter()
    with pytest.raises(Abandoned, match="model m: the caller went away"):
        threading.Timer(0.0, lambda: (wait_until(lambda: abandon and queue.queued_images == 2),
                                      abandon[0]())).start()
        queue.submit_blocking(images(2, seed=1), gate=gate, on_abandon=abandon.append)
    assert queue.queued_images == 0 and gate.working == 1
    gate.leave()
    model.gate.set()
    holder[0].join(30)
    abandon[0]()
    assert model.sizes == [1] and gate.working == 0
    np.testing.assert_array_equal(results[0], 2 * images(1, seed=0))
    queue.scheduler.stop()
