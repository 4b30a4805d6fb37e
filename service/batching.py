"""The batch queue: gathers concurrent requests for one model version into batches.

Requests of 1..k images wait in a bounded FIFO queue. Whenever one of the model's instances is
free it takes everything waiting, up to ``max_batch_size`` images and whole requests only, runs it
as one batch off the event loop and hands every caller exactly its own rows. At low load a request
therefore runs at once; under load batches grow by themselves. ``max_queue_delay_ms`` lets a free
instance wait that long (from the oldest request's arrival) for a fuller batch, and
``preferred_batch_sizes`` caps a batch at the largest preferred size that the queue can fill.

The queue is event-driven: it dispatches when a request arrives (on a ``service.idle`` loop: once
the loop has taken in every request that has already reached the process, so that on a busy core
arrivals join one batch instead of each waking a compute thread), when an instance finishes and
when a delay runs out; each instance is a thread of its own that computes and posts the outcome
back to the event loop. An instance that finishes while a full batch waits takes it at once, in
its own thread, under the queue's lock: neither it nor a high-priority request waits for a busy
event loop to hear of the finished batch. Everything else about the queue happens on the loop.
It knows nothing of gRPC: it raises the exceptions of ``service.errors``, which the servicers map
to status codes. Stacking requests into a batch and cutting the outputs
back are the pure functions of ``service.batches``; what the next batch holds is decided in
``BatchQueue._take_next_batch`` alone, from the priority levels and queue policies of
``service.priority`` (one FIFO when the model has no levels).
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .batches import buffer_for, merge, split
from .errors import BatchFailed, DeadlineExceeded, InvalidInput, QueueFull, RequestTooLarge, ShuttingDown
from .idle import call_when_idle
from .priority import LevelFull, PriorityQueue
from .instances import InstanceThread
from .settings import BatchSettings
from .timing import RequestTiming

log = logging.getLogger(__name__)

Compute = Callable[[int, np.ndarray], Any]
"""compute(instance, batch) -> outputs with one row per batch row, or a tuple (a NamedTuple, say)
of such arrays; runs in the instance's thread. Each caller gets its rows of every array."""


class BatchObserver:
    """Hooks the queue calls as it works (metrics and statistics implement them); this one does
    nothing. ``level`` is the request's priority level (0 when levels are off)."""

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


_QUEUED, _TAKEN, _DONE = "queued", "taken", "done"


def _same_shape(request: "_Request", batch: list["_Request"]) -> bool:
    return request.inputs.shape[1:] == batch[0].inputs.shape[1:]


@dataclass(eq=False)
class _Request:
    inputs: np.ndarray
    future: asyncio.Future
    enqueued: float
    level: int = 0
    timeout_at: float | None = None
    delayed: bool = False
    state: str = _QUEUED
    taken: float = 0.0
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)
    timing: RequestTiming | None = None

    @property
    def images(self) -> int:
        return len(self.inputs)


class BatchQueue:
    """The batch queue of one model version: ``await submit(x)`` returns the outputs for x's rows."""

    def __init__(self, compute: Compute, settings: BatchSettings, *, name: str = "model",
                 observer: BatchObserver | None = None):
        self.compute = compute
        self.settings = settings
        self.name = name
        self.observer = observer or BatchObserver()
        self._queue = PriorityQueue(settings.priority)
        self._threads: list[InstanceThread] = []
        self._free: list[int] = []
        self._running: dict[int, list[_Request]] = {}
        self._buffers: list[np.ndarray | None] = [None] * settings.instances
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._closing = ""
        self._stopped = False  # close() gave up on what was left: instances take nothing more
        self._idle: asyncio.Event | None = None
        self._lock = threading.RLock()  # the queue and request states, shared with the instances' hand-off

    @property
    def queued_images(self) -> int:
        return self._queue.images

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self) -> None:
        """Start one thread per instance (submit calls it)."""
        if self._threads or self._closed:
            return
        self._threads = [InstanceThread(f"{self.name}-instance-{i}") for i in range(self.settings.instances)]
        self._free = list(reversed(range(self.settings.instances)))

    async def submit(self, inputs: np.ndarray, timeout: float | None = None, priority: int = 0,
                     timing: RequestTiming | None = None) -> Any:
        """Queue ``inputs`` (k images, rows along axis 0) and return the k rows of outputs.

        ``priority`` picks the level (0 = the model's default; 1 is the highest). ``timeout``
        (seconds) bounds the time spent waiting in the queue together with the level's policy
        (service.priority.QueuePolicy.timeout): past it a REJECT policy answers DeadlineExceeded
        without computing, a DELAY policy moves the request behind its level's others. Cancelling
        the caller withdraws it. ``timing``, if given, learns where the request's time went.
        """
        s = self.settings
        if self._closed:
            raise ShuttingDown(f"model {self.name}: {self._closing} and accepts no new requests")
        k = len(inputs)
        if k == 0:
            raise InvalidInput("batch size: expected at least 1 image, received 0")
        if k > s.max_batch_size:
            raise RequestTooLarge(f"batch size: expected at most max_batch_size={s.max_batch_size} images "
                                  f"for model {self.name}, received {k}")
        if self._queue.images + k > s.max_queue_size:  # the instances only ever take images out
            raise self._refused(QueueFull(f"model {self.name}: queue full ({self._queue.images} images waiting, "
                                          f"max_queue_size={s.max_queue_size}, request has {k})"))
        level = s.priority.level_of(priority)
        try:
            self._queue.check(level, k)
        except LevelFull as exc:
            raise self._refused(QueueFull(f"model {self.name}: {exc}")) from None
        if timeout is not None and timeout <= 0:
            raise self._refused(DeadlineExceeded(
                f"model {self.name}: deadline passed before the request was queued; not computed"))
        wait = self._queue.policy(level).timeout(timeout)
        self.start()
        loop = asyncio.get_running_loop()
        now = loop.time()
        request = _Request(inputs, loop.create_future(), now, level, None if wait is None else now + wait,
                           timing=timing)
        with self._lock:
            self._queue.push(request)
        if request.timeout_at is not None:
            request.timer = loop.call_at(request.timeout_at, self._on_timeout, request)
        self.observer.queue_depth(k, level)
        self._dispatch_when_idle()
        try:
            return await request.future
        except asyncio.CancelledError:
            self._withdraw(request)
            raise

    async def close(self, grace: float | None = None, why: str = "the server is shutting down") -> None:
        """Stop accepting requests, finish the queued ones within ``grace`` seconds, then stop.

        Requests still queued or computing when the grace period ends get ShuttingDown.
        """
        self._closed = True
        self._closing = why
        if self._timer is not None:
            self._timer.cancel()
        if self._threads:
            self._dispatch()  # a delayed batch goes now
            self._idle = asyncio.Event()
            self._check_idle()
            try:
                await asyncio.wait_for(self._idle.wait(), grace)
            except TimeoutError:
                pass
        stopped = self._not_computed()
        with self._lock:
            self._stopped = True
            left = list(self._queue)
            for request in left:
                self._queue.remove(request)
                request.state = _TAKEN
        for request in left:
            self._leave_queue(request)
            self._finish(request, error=stopped)
        for batch in self._running.values():
            for request in batch:
                self._finish(request, error=ShuttingDown(
                    f"model {self.name}: the server stopped while this request was computing"))
        self._running.clear()
        for thread in self._threads:
            thread.stop()

    # -- the queue -----------------------------------------------------------------------------

    def _not_computed(self) -> ShuttingDown:
        return ShuttingDown(f"model {self.name}: the server stopped before this request was computed")

    def _refused(self, error: Exception) -> Exception:
        """A well-formed request the queue turns away at once (full, or out of time) fails here."""
        self.observer.request_failed(0.0)
        return error

    def _leave_queue(self, request: _Request) -> None:
        """Bookkeeping once ``request`` is out of the priority queue (taken, withdrawn, rejected)."""
        self.observer.queue_depth(-request.images, request.level)
        if request.timer is not None:
            request.timer.cancel()

    def _finish(self, request: _Request, result: Any = None, error: Exception | None = None) -> None:
        request.state = _DONE
        if request.future.done():
            return
        if error is not None:
            request.future.set_exception(error)
            self.observer.request_failed(asyncio.get_running_loop().time() - request.enqueued)
        else:
            request.future.set_result(result)

    def _withdraw(self, request: _Request) -> None:
        with self._lock:
            queued = request.state == _QUEUED
            if queued:
                self._queue.remove(request)
        if queued:
            self._leave_queue(request)
            self._check_idle()
        if request.state != _DONE:
            self.observer.request_failed(asyncio.get_running_loop().time() - request.enqueued)
        request.state = _DONE

    def _expire(self, now: float) -> None:
        """Apply the timeout action to the requests whose policy timeout has passed at ``now``."""
        with self._lock:
            expired = self._queue.expire(now)
            for request in expired:
                request.state = _TAKEN
        for request in expired:
            self._leave_queue(request)
            self._finish(request, error=DeadlineExceeded(
                f"model {self.name}: deadline passed after {(request.timeout_at - request.enqueued) * 1e3:.1f} ms in "
                f"the queue{f' (priority level {request.level})' if request.level else ''}; not computed"))
        self._check_idle()

    def _on_timeout(self, request: _Request) -> None:
        with self._lock:
            due = request.state == _QUEUED and not request.delayed
        if due:
            self._expire(max(asyncio.get_running_loop().time(), request.timeout_at))

    def _take_next_batch(self, now: float) -> list[_Request]:
        """Pop the next batch from what is waiting: highest priority level first (service.priority),
        whole requests, at most cap() images, one input shape; timed-out requests are answered or
        delayed first. The one place that chooses."""
        self._expire(now)
        with self._lock:
            batch = self._take(now)
        self._taken(batch)
        return batch

    def _take(self, now: float) -> list[_Request]:
        """Pop the next batch (the lock held; from the loop or an instance's thread)."""
        batch = self._queue.take(self.settings.cap(self._queue.images), _same_shape)
        for request in batch:
            request.state = _TAKEN
            request.taken = now
        return batch

    def _taken(self, batch: list[_Request]) -> None:
        """On the loop: the bookkeeping of a batch out of the queue."""
        for request in batch:
            self._leave_queue(request)
            self.observer.queue_wait(request.taken - request.enqueued, request.level)

    def _dispatch(self) -> None:
        """Give free instances batches while there is work (and no reason to wait for more)."""
        loop = asyncio.get_running_loop()
        delay = self.settings.max_queue_delay_ms / 1e3
        while self._free and self._queue:
            now = loop.time()
            if delay > 0 and not self._closed and self._queue.images < self.settings.target:
                with self._lock:
                    oldest = self._queue.oldest()
                if oldest is None:  # an instance's hand-off took the rest
                    return
                due = oldest.enqueued + delay
                if now < due:
                    if self._timer is None or self._timer.when() != due:
                        if self._timer is not None:
                            self._timer.cancel()
                        self._timer = loop.call_at(due, self._on_timer)
                    return
            batch = self._take_next_batch(now)
            if batch:
                self._start(self._free.pop(), batch)

    def _dispatch_when_idle(self) -> None:
        """Dispatch once the event loop has taken in everything that has reached it (service.idle)."""
        if not call_when_idle(self._dispatch, key=self):
            self._dispatch()

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _check_idle(self) -> None:
        if self._idle is not None and not self._queue and not self._running:
            self._idle.set()

    # -- the instances -------------------------------------------------------------------------

    def _start(self, instance: int, batch: list[_Request]) -> None:
        self._running[instance] = batch
        loop = asyncio.get_running_loop()
        self._threads[instance].run(lambda: self._work(loop, instance, batch))

    def _work(self, loop: asyncio.AbstractEventLoop, instance: int, batch: list[_Request]) -> None:
        """In the instance's thread: compute the batch, take the next one if a full one waits
        (``_hand_off``), post both to the loop (``_done``), and go on with the next."""
        while batch:
            try:
                outcome, failed = self._assemble_and_compute(instance, [r.inputs for r in batch]), False
            except Exception as exc:
                outcome, failed = exc, True
            following = self._hand_off()
            try:
                loop.call_soon_threadsafe(self._done, instance, batch, outcome, failed, following)
            except RuntimeError:  # the event loop is closed: nobody waits for this any more
                return
            batch = following

    def _hand_off(self) -> list[_Request]:
        """In a thread that just finished: the next batch when the loop would start it at once (a
        full batch waits, or the queue is closing) and no timeout action is due; else nothing."""
        with self._lock:
            queue = self._queue
            if self._stopped or not queue or (queue.images < self.settings.target and not self._closed):
                return []
            now = time.monotonic()  # the clock of loop.time()
            if queue.due(now):
                return []  # the loop applies the timeout actions first
            return self._take(now)

    def _assemble_and_compute(self, instance: int, inputs: list[np.ndarray]) -> tuple[Any, list[slice], float, float]:
        """In the instance's thread: merge into the instance's reused array, then compute.
        Returns the outputs, the row spans, the compute seconds and the merge seconds."""
        merging = time.perf_counter()
        held = self._buffers[instance]
        if len(inputs) > 1:
            held = self._buffers[instance] = buffer_for(held, inputs[0], self.settings.max_batch_size)
        batch, rows = merge(inputs, held)
        start = time.perf_counter()
        outputs = self.compute(instance, batch)
        return outputs, rows, time.perf_counter() - start, start - merging

    def _done(self, instance: int, batch: list[_Request], outcome: Any, failed: bool,
              following: list[_Request]) -> None:
        """On the event loop: hand out the rows (or the error); the instance goes on with
        ``following`` (taken in its thread) or is free, and the queue dispatches again."""
        if self._running.get(instance) is not batch:  # close() gave up on this batch already
            self._taken(following)
            for request in following:
                self._finish(request, error=self._not_computed())
            return
        del self._running[instance]
        if following:
            self._running[instance] = following
            self._taken(following)
        else:
            self._free.append(instance)
        total = sum(r.images for r in batch)
        if not failed:
            outputs, rows, seconds, input_s = outcome
            splitting = time.perf_counter()
            try:
                results = split(outputs, rows)
            except ValueError as exc:
                outcome, failed = RuntimeError(str(exc)), True
        if failed:
            error_id = uuid.uuid4().hex[:12]
            log.error("model %s: batch of %d images (%d requests) failed on instance %d [error id %s]",
                      self.name, total, len(batch), instance, error_id, exc_info=outcome)
            message = f"model {self.name}: inference failed ({type(outcome).__name__}); error id {error_id}"
            for request in batch:
                self._finish(request, error=BatchFailed(message, error_id))
        else:
            self.observer.batch_done(total, seconds)
            now = asyncio.get_running_loop().time()
            spans = [(r.taken - r.enqueued, now - r.enqueued) for r in batch]  # (queued, arrival to rows) s
            for request, result, (queued, until_rows) in zip(batch, results, spans):
                if request.timing is not None:
                    request.timing.queue_s, request.timing.compute_s = queued, input_s + seconds
                    request.timing.total_s = until_rows
                self._finish(request, result=result)
            self.observer.batch_timed(total, input_s, seconds, time.perf_counter() - splitting, spans)
        if self._queue.images >= self.settings.target:
            self._dispatch()  # a full batch waits: waiting for more arrivals gains nothing
        else:
            self._dispatch_when_idle()
        self._check_idle()
