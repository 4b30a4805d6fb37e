"""The scheduler on its own, driven from plain threads with no event loop: it chooses batches in
one place, answers what it must itself (timeouts, stop) through ``deliver``, and never hands a
withdrawn request back."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from service.errors import DeadlineExceeded, QueueFull, ShuttingDown
from service.priority import PrioritySettings, QueuePolicy
from service.scheduler import DONE, BatchObserver, Pending, Scheduler
from service.settings import BatchSettings


def tagged(tag: float, k: int = 1) -> np.ndarray:
    return np.full((k, 2), tag, dtype=np.float32)


class Delivered:
    """``deliver`` of a test: every answered request, in order, from whichever thread."""

    def __init__(self):
        self.requests: list[Pending] = []
        self.lock = threading.Lock()

    def __call__(self, requests: list[Pending]) -> bool:
        with self.lock:
            self.requests.extend(requests)
        return True  # the test settles itself


def scheduler(deliver, **settings) -> Scheduler:
    return Scheduler(BatchSettings(**settings), "m", BatchObserver(), deliver)


def pending(tag: float, k: int = 1, level: int = 0, timeout_at: float | None = None) -> Pending:
    return Pending(tagged(tag, k), time.monotonic(), None, level, timeout_at)


def test_an_instance_takes_whole_requests_in_priority_order_up_to_the_cap():
    delivered = Delivered()
    s = scheduler(delivered, max_batch_size=3, priority=PrioritySettings(priority_levels=2, default_priority_level=2))
    requests = [pending(1, 2, level=2), pending(2, 1, level=1), pending(3, 2, level=2)]
    for r in requests:
        s.push(r)
    first = s.next_batch(0)
    assert [float(r.inputs[0, 0]) for r in first] == [2, 1]  # level 1 first, then level 2's oldest (1+2 = 3)
    s.finish(0, first, [r.inputs * 2 for r in first])
    s.settle()  # the callers have their rows (a partial batch waits for this)
    second = s.next_batch(0)
    assert [float(r.inputs[0, 0]) for r in second] == [3]
    s.finish(0, second, [r.inputs * 2 for r in second])
    assert delivered.requests == first + second
    assert all(r.state == DONE and r.error is None for r in delivered.requests)
    np.testing.assert_array_equal(delivered.requests[0].result, tagged(2) * 2)


def test_unsettled_arrivals_wait_for_settle_unless_a_full_batch_waits():
    s = scheduler(Delivered(), max_batch_size=4)
    taken: list[list[Pending]] = []
    thread = threading.Thread(target=lambda: taken.append(s.next_batch(0)))
    s.push(pending(1), settled=False)
    thread.start()
    thread.join(0.3)
    assert thread.is_alive() and not taken  # a partial batch: the pushing side has not settled
    s.settle()
    thread.join(10)
    assert [len(b) for b in taken] == [1]
    s.finish(0, taken[0], [None])
    for tag in range(4):
        s.push(pending(tag), settled=False)
    assert len(s.next_batch(0)) == 4  # full: taken without waiting to settle


def test_a_rejected_timeout_is_answered_by_expire_without_computing():
    delivered = Delivered()
    policy = QueuePolicy(default_timeout_us=1000)
    s = scheduler(delivered, max_batch_size=4, priority=PrioritySettings(default_queue_policy=policy))
    late = pending(1)
    now = late.enqueued
    late.timeout_at = now + 0.001  # the policy's 1 ms from this request's own arrival
    s.push(late)
    assert s.expire(now + 0.002) is None
    assert delivered.requests == [late] and isinstance(late.error, DeadlineExceeded)
    assert "deadline passed after 1.0 ms in the queue; not computed" in str(late.error)
    assert s.queued_images == 0


def test_a_withdrawn_request_is_never_delivered_and_stop_answers_the_rest():
    delivered = Delivered()
    s = scheduler(delivered, max_batch_size=2, max_queue_size=4)
    computing, withdrawn, queued = pending(1, 2), pending(2), pending(3)
    s.push(computing)
    batch = s.next_batch(0)
    s.push(withdrawn)
    s.push(queued)
    with pytest.raises(QueueFull, match="queue full .*max_queue_size=4, request has 3"):
        s.push(pending(4, 3))
    s.withdraw(withdrawn)
    s.stop()
    assert s.next_batch(0) is None
    s.finish(0, batch, [None])  # stop answered it already: nothing more is delivered
    assert delivered.requests == [queued, computing]
    assert "before this request was computed" in str(queued.error)
    assert "while this request was computing" in str(computing.error)
    with pytest.raises(ShuttingDown):
        s.push(pending(5))
