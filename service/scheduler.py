"""The scheduler of one model version's batch queue: thread-safe, and the one place a batch is chosen.

Callers (any thread) ``push`` requests; the model's instance threads block in ``next_batch`` and
call ``finish`` with each batch's outcome; everything a caller gets back (rows or an error) leaves
through the ``deliver`` callback the owner gave, with the requests' ``result`` or ``error`` set.
``deliver`` returns True when the pushing side will call ``settle()`` once it has handed them out
(an event loop), False when they are out already. The scheduler knows no transport and no event loop: its clock is ``time.monotonic`` (the clock
of asyncio's ``loop.time()``), and it raises or delivers the exceptions of ``service.errors``.

The one chooser is ``next_batch``: highest priority level first (service.priority), whole
requests, at most ``cap()`` images, one input shape, timed-out requests answered or delayed first.
A free instance takes a batch when a full one (``target`` images) waits, when the queue is
closing, when ``max_queue_delay_ms`` has run out for the oldest request, or, without a delay, once
the pushing side has *settled*: it has taken in every request that reached it and handed out every
result delivered to it (an event loop settles when it goes idle, service.idle). On a busy core the
requests arriving meanwhile then join one batch instead of each waking an instance.

The lock (the Condition's) guards the priority queue, every request's ``state``, the running
batches and the closed/stopped flags. Invariants: a request is in the priority queue exactly while
its state is QUEUED; it is in ``_running`` exactly while TAKEN; it is answered (DONE) once. The lock
is never held while computing or while a caller's code runs; observer hooks run under it (so an
observer of one queue needs no lock of its own), and so does ``deliver`` for the requests the
scheduler answers itself (timeouts, stop), which must therefore only hand off, never block.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .errors import BatchFailed, DeadlineExceeded, QueueFull, ShuttingDown
from .priority import LevelFull, PriorityQueue
from .settings import BatchSettings
from .timing import RequestTiming

log = logging.getLogger(__name__)

QUEUED, TAKEN, DONE = 0, 1, 2


class BatchObserver:
    """Hooks the scheduler calls as it works (metrics and statistics implement them); this one does
    nothing. ``level`` is the request's priority level (0 when levels are off). They run under the
    scheduler's lock and must not call back into it."""

    def queue_depth(self, delta_images: int, level: int = 0) -> None:
        """Images entered (+) or left (-) the queue."""

    def queue_wait(self, seconds: float, level: int = 0) -> None:
        """A request left the queue for a batch after waiting this long."""

    def batch_done(self, images: int, compute_seconds: float) -> None:
        """A batch of this many images was computed successfully."""

    def batch_timed(self, images: int, input_s: float, infer_s: float, output_s: float,
                    requests: list[tuple[float, float]]) -> None:
        """The same batch's phases (merging the input, computing, handing out the rows) and per
        request (seconds queued, seconds from arrival to its rows being handed out)."""

    def request_failed(self, seconds: float) -> None:
        """A request that reached the queue failed (or was withdrawn) this long after arriving."""


@dataclass(eq=False, slots=True)
class Pending:
    """One request in the scheduler: its rows, arrival, level and policy deadline; ``waiter`` is
    whatever the pushing side needs to hand the answer back (the scheduler never looks at it)."""

    inputs: np.ndarray
    enqueued: float
    waiter: Any = None
    level: int = 0
    timeout_at: float | None = None
    timing: RequestTiming | None = None
    delayed: bool = False
    state: int = QUEUED
    taken: float = 0.0
    result: Any = None
    error: Exception | None = None

    @property
    def images(self) -> int:
        return len(self.inputs)


def _same_shape(request: Pending, batch: list[Pending]) -> bool:
    return request.inputs.shape[1:] == batch[0].inputs.shape[1:]


class Scheduler:
    """The waiting requests of one model version and the batches its instances take (see above)."""

    def __init__(self, settings: BatchSettings, name: str, observer: BatchObserver,
                 deliver: Callable[[list[Pending]], bool]):
        self.settings = settings
        self.name = name
        self.observer = observer
        self.deliver = deliver
        self._cond = threading.Condition(threading.Lock())
        self._queue = PriorityQueue(settings.priority)
        self._running: dict[int, list[Pending]] = {}
        self._settled = True
        self.closed = False
        self._closing = ""
        self._stopped = False
        self.idle = threading.Event()
        """Set once closed with nothing queued or computing."""

    @property
    def queued_images(self) -> int:
        return self._queue.images

    def refusal(self) -> ShuttingDown:
        return ShuttingDown(f"model {self.name}: {self._closing} and accepts no new requests")

    def push(self, request: Pending, settled: bool = True) -> None:
        """Queue ``request``, or raise QueueFull / ShuttingDown. ``settled=False``: more arrivals
        may follow at once, and the caller calls ``settle()`` once they are in."""
        k = request.images
        with self._cond:
            if self.closed:
                raise self.refusal()
            if self._queue.images + k > self.settings.max_queue_size:
                self.observer.request_failed(0.0)
                raise QueueFull(f"model {self.name}: queue full ({self._queue.images} images waiting, "
                                f"max_queue_size={self.settings.max_queue_size}, request has {k})")
            try:
                self._queue.check(request.level, k)
            except LevelFull as exc:
                self.observer.request_failed(0.0)
                raise QueueFull(f"model {self.name}: {exc}") from None
            self._queue.push(request)
            self.observer.queue_depth(k, request.level)
            self._settled = settled
            if settled or self._queue.images >= self.settings.target:
                self._cond.notify()

    def settle(self) -> None:
        """The pushing side has taken in what reached it and handed out what it was given."""
        with self._cond:
            self._settled = True
            if self._queue:
                self._cond.notify()

    def withdraw(self, request: Pending) -> bool:
        """The caller gave up (cancelled): out of the queue if still there; it is never delivered.
        False when it had been answered already."""
        with self._cond:
            if request.state == DONE:
                return False
            if request.state == QUEUED:
                self._queue.remove(request)
                self.observer.queue_depth(-request.images, request.level)
            request.state = DONE
            self.observer.request_failed(time.monotonic() - request.enqueued)
            self._check_idle()
            return True

    def expire(self, now: float | None = None) -> float | None:
        """Apply the queue policies' timeout actions due at ``now``; returns the next timeout due."""
        with self._cond:
            self._expire(time.monotonic() if now is None else now)
            return self._queue.next_timeout()

    def _expire(self, now: float) -> None:
        rejected = self._queue.expire(now)
        for request in rejected:
            self.observer.queue_depth(-request.images, request.level)
            self._answer(request, DeadlineExceeded(
                f"model {self.name}: deadline passed after {(request.timeout_at - request.enqueued) * 1e3:.1f} ms in "
                f"the queue{f' (priority level {request.level})' if request.level else ''}; not computed"), now)
        if rejected:
            self.deliver(rejected)
            self._check_idle()

    def _answer(self, request: Pending, error: Exception, now: float) -> None:
        request.state = DONE
        request.error = error
        self.observer.request_failed(now - request.enqueued)

    def next_batch(self, instance: int) -> list[Pending] | None:
        """Block until instance ``instance`` should compute a batch and return it (the one place a
        batch is chosen); None once the scheduler has stopped."""
        delay = self.settings.max_queue_delay_ms / 1e3
        target = self.settings.target
        with self._cond:
            while True:
                if self._stopped:
                    return None
                now = time.monotonic()
                if self._queue.due(now):
                    self._expire(now)
                due = None
                if self._queue:
                    full = self.closed or self._queue.images >= target
                    if full or (delay == 0 and self._settled):
                        return self._take(instance, now)
                    if delay > 0:
                        due = self._queue.oldest().enqueued + delay
                        if now >= due:
                            return self._take(instance, now)
                timeout = self._queue.next_timeout()
                wake = due if timeout is None else timeout if due is None else min(due, timeout)
                self._cond.wait(None if wake is None else max(0.0, wake - now))

    def _take(self, instance: int, now: float) -> list[Pending]:
        batch = self._queue.take(self.settings.cap(self._queue.images), _same_shape)
        for request in batch:
            request.state = TAKEN
            request.taken = now
            self.observer.queue_depth(-request.images, request.level)
            self.observer.queue_wait(now - request.enqueued, request.level)
        self._running[instance] = batch
        if self._queue:
            self._cond.notify()  # another free instance may take the rest
        return batch

    def finish(self, instance: int, batch: list[Pending], results: list[Any] | None, error: Exception | None = None,
               input_s: float = 0.0, infer_s: float = 0.0) -> None:
        """Instance ``instance`` computed ``batch``: each request's rows (``results``), or ``error``."""
        splitting = time.perf_counter()
        with self._cond:
            if self._running.get(instance) is not batch:  # stop() answered it already
                return
            del self._running[instance]
            now = time.monotonic()
            live = []
            if error is not None:
                error_id = uuid.uuid4().hex[:12]
                log.error("model %s: batch of %d images (%d requests) failed on instance %d [error id %s]",
                          self.name, sum(r.images for r in batch), len(batch), instance, error_id, exc_info=error)
                failure = BatchFailed(f"model {self.name}: inference failed ({type(error).__name__}); "
                                      f"error id {error_id}", error_id)
                for request in batch:
                    if request.state != DONE:
                        self._answer(request, failure, now)
                        live.append(request)
            else:
                spans = []
                for request, rows in zip(batch, results):
                    if request.state == DONE:  # withdrawn while computing
                        continue
                    span = (request.taken - request.enqueued, now - request.enqueued)
                    if request.timing is not None:
                        request.timing.queue_s, request.timing.compute_s = span[0], input_s + infer_s
                        request.timing.total_s = span[1]
                    request.state = DONE
                    request.result = rows
                    live.append(request)
                    spans.append(span)
                images = sum(r.images for r in batch)
                self.observer.batch_done(images, infer_s)
                self.observer.batch_timed(images, input_s, infer_s, time.perf_counter() - splitting, spans)
            if live:
                self._settled = False  # their callers may answer with new requests: let them arrive
            self._check_idle()
        if live and not self.deliver(live):
            self.settle()

    def close(self, why: str) -> None:
        """Accept nothing more; what is queued goes at once (no delay, no waiting to settle)."""
        with self._cond:
            self.closed = True
            self._closing = why
            self._check_idle()
            self._cond.notify_all()

    def stop(self) -> None:
        """Answer everything still queued or computing ShuttingDown; instance threads end."""
        with self._cond:
            self.closed = self._stopped = True
            now = time.monotonic()
            answered = []
            for request in list(self._queue):
                self._queue.remove(request)
                self.observer.queue_depth(-request.images, request.level)
                self._answer(request, ShuttingDown(
                    f"model {self.name}: the server stopped before this request was computed"), now)
                answered.append(request)
            for batch in self._running.values():
                for request in batch:
                    if request.state != DONE:
                        self._answer(request, ShuttingDown(
                            f"model {self.name}: the server stopped while this request was computing"), now)
                        answered.append(request)
            self._running.clear()
            self.idle.set()
            self._cond.notify_all()
        if answered:
            self.deliver(answered)

    def _check_idle(self) -> None:
        if self.closed and not self._queue and not self._running:
            self.idle.set()
