"""The batch queue: gathers concurrent requests for one model version into batches.

Requests of 1..k images wait in a bounded FIFO queue. Whenever one of the model's instances is
free it takes everything waiting, up to ``max_batch_size`` images and whole requests only, runs it
as one batch off the event loop and hands every caller exactly its own rows. At low load a request
therefore runs at once; under load batches grow by themselves. ``max_queue_delay_ms`` lets a free
instance wait that long (from the oldest request's arrival) for a fuller batch, and
``preferred_batch_sizes`` caps a batch at the largest preferred size that the queue can fill.

The queue knows nothing of gRPC: it raises the exceptions of ``service.errors``, which the
servicers map to status codes. The free instances take turns as the single "leader" that forms
the next batch (an asyncio lock), so a batch is never split between two half-empty runs.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .errors import BatchFailed, DeadlineExceeded, InvalidInput, QueueFull, RequestTooLarge, ShuttingDown

log = logging.getLogger(__name__)

Compute = Callable[[int, np.ndarray], np.ndarray]
"""compute(instance, batch) -> outputs with one row per batch row; runs in a worker thread."""


@dataclass(frozen=True)
class BatchSettings:
    """How one model batches: the fields of config.json's ``batching`` block (DESIGN.md)."""

    max_batch_size: int = 64
    max_queue_delay_ms: float = 0.0
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int = 1024
    instances: int = 1

    def __post_init__(self):
        for name in ("max_batch_size", "max_queue_size", "instances"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"batching.{name}: expected an integer >= 1, got {value!r}")
        if not isinstance(self.max_queue_delay_ms, (int, float)) or self.max_queue_delay_ms < 0:
            raise ValueError(f"batching.max_queue_delay_ms: expected a number >= 0, got {self.max_queue_delay_ms!r}")
        sizes = tuple(self.preferred_batch_sizes)
        if any(not isinstance(s, int) or not 1 <= s <= self.max_batch_size for s in sizes):
            raise ValueError(f"batching.preferred_batch_sizes: expected integers in 1..max_batch_size "
                             f"({self.max_batch_size}), got {list(sizes)!r}")
        object.__setattr__(self, "preferred_batch_sizes", tuple(sorted(set(sizes))))
        if self.max_queue_size < self.max_batch_size:
            raise ValueError(f"batching.max_queue_size: expected >= max_batch_size ({self.max_batch_size}), "
                             f"got {self.max_queue_size}")

    def cap(self, queued_images: int) -> int:
        """The most images the next batch may hold when ``queued_images`` are waiting."""
        fitting = [s for s in self.preferred_batch_sizes if s <= queued_images]
        return fitting[-1] if fitting else self.max_batch_size

    @property
    def target(self) -> int:
        """The batch size a delayed instance waits for: the largest preferred size, else the maximum."""
        return self.preferred_batch_sizes[-1] if self.preferred_batch_sizes else self.max_batch_size


class BatchObserver:
    """Hooks the queue calls as it works (metrics implement them); this one does nothing."""

    def queue_depth(self, delta_images: int) -> None:
        """Images entered (+) or left (-) the queue."""

    def queue_wait(self, seconds: float) -> None:
        """A request left the queue for a batch after waiting this long."""

    def batch_done(self, images: int, compute_seconds: float) -> None:
        """A batch of this many images was computed successfully."""


_QUEUED, _TAKEN, _DONE = "queued", "taken", "done"


@dataclass(eq=False)
class _Request:
    inputs: np.ndarray
    future: asyncio.Future
    enqueued: float
    deadline: float | None
    state: str = _QUEUED
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)

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
        self._queue: collections.deque[_Request] = collections.deque()
        self._queued_images = 0
        self._busy = 0
        self._closed = False
        self._arrived = asyncio.Event()
        self._leader = asyncio.Lock()
        self._workers: list[asyncio.Task] = []
        self._executor: ThreadPoolExecutor | None = None

    @property
    def queued_images(self) -> int:
        return self._queued_images

    @property
    def busy_instances(self) -> int:
        return self._busy

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self) -> None:
        """Start one worker task per instance (needs a running event loop; submit calls it)."""
        if self._workers or self._closed:
            return
        self._executor = ThreadPoolExecutor(self.settings.instances, thread_name_prefix=f"{self.name}-compute")
        self._workers = [asyncio.create_task(self._worker(i), name=f"{self.name}-instance-{i}")
                         for i in range(self.settings.instances)]

    async def submit(self, inputs: np.ndarray, timeout: float | None = None) -> np.ndarray:
        """Queue ``inputs`` (k images, rows along axis 0) and return the k rows of outputs.

        ``timeout`` (seconds) bounds the time spent waiting in the queue: past it the request is
        answered DeadlineExceeded without being computed. Cancelling the caller withdraws it.
        """
        s = self.settings
        if self._closed:
            raise ShuttingDown(f"model {self.name}: the server is shutting down and accepts no new requests")
        k = len(inputs)
        if k == 0:
            raise InvalidInput("batch size: expected at least 1 image, received 0")
        if k > s.max_batch_size:
            raise RequestTooLarge(f"batch size: expected at most max_batch_size={s.max_batch_size} images "
                                  f"for model {self.name}, received {k}")
        if self._queued_images + k > s.max_queue_size:
            raise QueueFull(f"model {self.name}: queue full ({self._queued_images} images waiting, "
                            f"max_queue_size={s.max_queue_size}, request has {k})")
        if timeout is not None and timeout <= 0:
            raise DeadlineExceeded(f"model {self.name}: deadline passed before the request was queued; not computed")
        self.start()
        loop = asyncio.get_running_loop()
        now = loop.time()
        request = _Request(inputs, loop.create_future(), now, None if timeout is None else now + timeout)
        if request.deadline is not None:
            request.timer = loop.call_at(request.deadline, self._expire, request)
        self._queue.append(request)
        self._queued_images += k
        self.observer.queue_depth(k)
        self._arrived.set()
        try:
            return await request.future
        except asyncio.CancelledError:
            self._withdraw(request)
            raise

    async def close(self, grace: float | None = None) -> None:
        """Stop accepting requests, finish the queued ones within ``grace`` seconds, then stop.

        Requests still queued or computing when the grace period ends get ShuttingDown.
        """
        self._closed = True
        self._arrived.set()
        if self._workers:
            done, pending = await asyncio.wait(self._workers, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
        while self._queue:
            request = self._queue.popleft()
            self._leave_queue(request)
            self._finish(request, error=ShuttingDown(
                f"model {self.name}: the server stopped before this request was computed"))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # -- the queue -----------------------------------------------------------------------------

    def _leave_queue(self, request: _Request) -> None:
        self._queued_images -= request.images
        self.observer.queue_depth(-request.images)
        if request.timer is not None:
            request.timer.cancel()

    def _finish(self, request: _Request, result: np.ndarray | None = None, error: Exception | None = None) -> None:
        request.state = _DONE
        if request.future.done():
            return
        if error is not None:
            request.future.set_exception(error)
        else:
            request.future.set_result(result)

    def _withdraw(self, request: _Request) -> None:
        if request.state == _QUEUED:
            self._queue.remove(request)
            self._leave_queue(request)
        request.state = _DONE

    def _expire(self, request: _Request) -> None:
        if request.state != _QUEUED:
            return
        self._queue.remove(request)
        self._leave_queue(request)
        waited = request.deadline - request.enqueued
        self._finish(request, error=DeadlineExceeded(
            f"model {self.name}: deadline passed after {waited * 1e3:.1f} ms in the queue; not computed"))

    def _take(self) -> list[_Request]:
        """Pop the next batch: FIFO, whole requests, at most cap() images, one input shape."""
        now = asyncio.get_running_loop().time()
        cap = self.settings.cap(self._queued_images)
        batch: list[_Request] = []
        total = 0
        while self._queue:
            request = self._queue[0]
            if request.deadline is not None and request.deadline <= now:
                self._expire(request)
                continue
            if batch and (total + request.images > cap or request.inputs.shape[1:] != batch[0].inputs.shape[1:]):
                break
            self._queue.popleft()
            self._leave_queue(request)
            request.state = _TAKEN
            self.observer.queue_wait(now - request.enqueued)
            batch.append(request)
            total += request.images
        return batch

    async def _wait_for_arrival(self, timeout: float | None = None) -> bool:
        self._arrived.clear()
        if timeout is None:
            await self._arrived.wait()
            return True
        try:
            await asyncio.wait_for(self._arrived.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def _next_batch(self) -> list[_Request] | None:
        """Wait (as the one leader among the free instances) for work and return the next batch."""
        delay = self.settings.max_queue_delay_ms / 1e3
        loop = asyncio.get_running_loop()
        async with self._leader:
            while True:
                while not self._queue:
                    if self._closed:
                        return None
                    await self._wait_for_arrival()
                while (delay > 0 and not self._closed and self._queue
                       and self._queued_images < self.settings.target):
                    remaining = self._queue[0].enqueued + delay - loop.time()
                    if remaining <= 0 or not await self._wait_for_arrival(remaining):
                        break
                batch = self._take()
                if batch:
                    return batch

    # -- the instances -------------------------------------------------------------------------

    async def _worker(self, instance: int) -> None:
        buffer: list[np.ndarray | None] = [None]
        while True:
            batch = await self._next_batch()
            if batch is None:
                return
            self._busy += 1
            try:
                await self._run(instance, batch, buffer)
            finally:
                self._busy -= 1

    def _assemble_and_compute(self, instance: int, inputs: list[np.ndarray],
                              buffer: list[np.ndarray | None]) -> tuple[np.ndarray, float]:
        """In a worker thread: concatenate into the instance's preallocated array, then compute."""
        if len(inputs) == 1:
            batch = inputs[0]
        else:
            total = sum(len(x) for x in inputs)
            item_shape, dtype = inputs[0].shape[1:], inputs[0].dtype
            held = buffer[0]
            if held is None or held.shape[1:] != item_shape or held.dtype != dtype:
                held = buffer[0] = np.empty((self.settings.max_batch_size, *item_shape), dtype=dtype)
            batch = held[:total]
            np.concatenate(inputs, axis=0, out=batch)
        start = time.perf_counter()
        outputs = self.compute(instance, batch)
        return outputs, time.perf_counter() - start

    async def _run(self, instance: int, batch: list[_Request], buffer: list[np.ndarray | None]) -> None:
        loop = asyncio.get_running_loop()
        total = sum(r.images for r in batch)
        try:
            outputs, seconds = await loop.run_in_executor(
                self._executor, self._assemble_and_compute, instance, [r.inputs for r in batch], buffer)
            if len(outputs) != total:
                raise RuntimeError(f"compute returned {len(outputs)} rows for a batch of {total}")
        except asyncio.CancelledError:
            for request in batch:
                self._finish(request, error=ShuttingDown(
                    f"model {self.name}: the server stopped while this request was computing"))
            raise
        except Exception as exc:
            error_id = uuid.uuid4().hex[:12]
            log.exception("model %s: batch of %d images (%d requests) failed on instance %d [error id %s]",
                          self.name, total, len(batch), instance, error_id)
            for request in batch:
                self._finish(request, error=BatchFailed(
                    f"model {self.name}: inference failed ({type(exc).__name__}); error id {error_id}", error_id))
            return
        self.observer.batch_done(total, seconds)
        offset = 0
        for request in batch:
            self._finish(request, result=outputs[offset:offset + request.images])
            offset += request.images
