"""The batch queue: gathers concurrent requests for one model version into batches.

Requests of 1..k images wait in a bounded queue. Whenever one of the model's instances is free it
takes what is waiting, up to ``max_batch_size`` images and whole requests only, computes it as one
batch in its own thread and hands every caller exactly its own rows. At low load a request
therefore runs at once; under load batches grow by themselves. ``max_queue_delay_ms`` lets a free
instance wait that long (from the oldest request's arrival) for a fuller batch, and
``preferred_batch_sizes`` caps a batch at the largest preferred size that the queue can fill.

Which batch runs next is chosen in one place, ``service.scheduler.Scheduler.next_batch``, under
one lock, by the instance threads themselves: this module is the asyncio side of it. ``submit``
pushes a request and awaits its future; an instance thread merges the batch (``service.batches``),
computes it, and posts every caller's rows back to its event loop in one call per batch. On a loop
from ``service.idle`` the queue tells the scheduler it has *settled* once the loop is idle (every
request that reached the process is queued, every result handed out), so that on a busy core the
arrivals join one batch instead of each waking an instance. Policy timeouts (service.priority) are
applied by the scheduler before every batch and, while every instance is busy, by one timer on the
loop for the earliest of them. A caller on a thread of its own (a synchronous transport's handler)
uses ``submit_blocking`` instead, and ``ThreadGate`` settles the scheduler for such threads. It
knows nothing of gRPC: it raises the exceptions of ``service.errors``, which the servicers map to
status codes.
"""
from __future__ import annotations

import asyncio
import threading
import time
import weakref
from typing import Any, Callable

import numpy as np

from .batches import buffer_for, merge, split
from .errors import Abandoned, DeadlineExceeded, InvalidInput, RequestTooLarge
from .idle import call_when_idle
from .scheduler import BatchObserver, Pending, Scheduler
from .settings import BatchSettings
from .timing import RequestTiming

__all__ = ["BatchObserver", "BatchQueue", "BatchSettings", "Compute"]


class _Blocked:
    """The waiter of a blocked caller (``submit_blocking``): released with its answer; its
    ``gate`` (or None) counts the caller's thread as working again from that moment."""

    __slots__ = ("lock", "gate")

    def __init__(self, gate: ThreadGate | None):
        self.lock = threading.Lock()
        self.lock.acquire()
        self.gate = gate

    def release(self) -> None:
        if self.gate is not None:
            self.gate.enter()
        self.lock.release()


Compute = Callable[[int, np.ndarray], Any]
"""compute(instance, batch) -> outputs with one row per batch row, or a tuple (a NamedTuple, say)
of such arrays; runs in the instance's thread. Each caller gets its rows of every array."""


class BatchQueue:
    """The batch queue of one model version: ``await submit(x)`` returns the outputs for x's rows."""

    def __init__(self, compute: Compute, settings: BatchSettings, *, name: str = "model",
                 observer: BatchObserver | None = None):
        self.compute = compute
        self.settings = settings
        self.name = name
        self.observer = observer or BatchObserver()
        self.scheduler = Scheduler(settings, name, self.observer, self._deliver)
        self._threads: list[threading.Thread] = []
        self._buffers: list[np.ndarray | None] = [None] * settings.instances
        self._timer: asyncio.TimerHandle | None = None

    @property
    def queued_images(self) -> int:
        return self.scheduler.queued_images

    @property
    def closed(self) -> bool:
        return self.scheduler.closed

    def start(self) -> None:
        """Start one thread per instance (submit calls it)."""
        if self._threads or self.scheduler.closed:
            return
        self._threads = [threading.Thread(target=self._serve, args=(i,), name=f"{self.name}-instance-{i}", daemon=True)
                         for i in range(self.settings.instances)]
        for thread in self._threads:
            thread.start()

    async def submit(self, inputs: np.ndarray, timeout: float | None = None, priority: int = 0,
                     timing: RequestTiming | None = None) -> Any:
        """Queue ``inputs`` (k images, rows along axis 0) and return the k rows of outputs.

        ``priority`` picks the level (0 = the model's default; 1 is the highest). ``timeout``
        (seconds) bounds the time spent waiting in the queue together with the level's policy
        (service.priority.QueuePolicy.timeout): past it a REJECT policy answers DeadlineExceeded
        without computing, a DELAY policy moves the request behind its level's others. Cancelling
        the caller withdraws it. ``timing``, if given, learns where the request's time went.
        """
        level, wait = self._admit(inputs, timeout, priority)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        now = time.monotonic()
        request = Pending(inputs, now, future, level, None if wait is None else now + wait, timing)
        hooked = call_when_idle(self.scheduler.settle, key=self)
        self.scheduler.push(request, settled=not hooked)
        if request.timeout_at is not None:
            self._arm(loop, request.timeout_at)
        try:
            return await future
        except asyncio.CancelledError:
            self.scheduler.withdraw(request)
            raise

    def _admit(self, inputs: np.ndarray, timeout: float | None, priority: int) -> tuple[int, float | None]:
        """The checks before a request is pushed; its level and how long it may wait (None: no limit)."""
        s = self.settings
        if self.scheduler.closed:
            raise self.scheduler.refusal()
        k = len(inputs)
        if k == 0:
            raise InvalidInput("batch size: expected at least 1 image, received 0")
        if k > s.max_batch_size:
            raise RequestTooLarge(f"batch size: expected at most max_batch_size={s.max_batch_size} images "
                                  f"for model {self.name}, received {k}")
        level = s.priority.level_of(priority)
        if timeout is not None and timeout <= 0:
            self.observer.request_failed(0.0)
            raise DeadlineExceeded(f"model {self.name}: deadline passed before the request was queued; not computed")
        self.start()
        return level, s.priority.policy(level).timeout(timeout)

    def submit_blocking(self, inputs: np.ndarray, timeout: float | None = None, priority: int = 0,
                        timing: RequestTiming | None = None, gate: ThreadGate | None = None,
                        on_abandon: Callable[[Callable[[], None]], Any] | None = None) -> Any:
        """``submit`` for a caller on a thread of its own (a synchronous transport's handler): blocks
        until the rows are back. Past ``timeout`` a request still queued is withdrawn and answered
        DeadlineExceeded; one already computing is waited for. With a ``gate`` the caller's thread
        has entered it and leaves it once the request is queued (``ThreadGate``). ``on_abandon``
        is given the function that withdraws the request and answers it Abandoned: the transport
        calls it when the caller goes away (it is harmless once the request is answered)."""
        level, wait = self._admit(inputs, timeout, priority)
        now = time.monotonic()
        waiter = _Blocked(gate)
        request = Pending(inputs, now, waiter, level, None if wait is None else now + wait, timing)
        if gate is not None:
            gate.feeds(self)
        self.scheduler.push(request, settled=gate is None)
        if on_abandon is not None:
            on_abandon(lambda: self._abandon(request))
        if gate is not None:
            gate.leave()
        if not waiter.lock.acquire(timeout=-1 if wait is None or wait >= threading.TIMEOUT_MAX else wait):
            self.scheduler.expire(max(time.monotonic(), request.timeout_at))
            waiter.lock.acquire()
        if request.error is not None:
            raise request.error
        return request.result

    def _abandon(self, request: Pending) -> None:
        """The blocked caller of ``request`` is gone: withdraw it and release its thread."""
        if self.scheduler.withdraw(request):
            request.error = Abandoned(f"model {self.name}: the caller went away; the request was withdrawn")
            request.waiter.release()

    async def close(self, grace: float | None = None, why: str = "the server is shutting down") -> None:
        """Stop accepting requests, finish the queued ones within ``grace`` seconds, then stop.

        Requests still queued or computing when the grace period ends get ShuttingDown.
        """
        self.scheduler.close(why)
        if self._timer is not None:
            self._timer.cancel()
        if self._threads and (grace is None or grace > 0):
            await asyncio.to_thread(self.scheduler.idle.wait, grace)
        self.scheduler.stop()

    # -- the event loop's side -------------------------------------------------------------------

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        """One timer for the earliest policy timeout (loop.time() is time.monotonic())."""
        if self._timer is None or when < self._timer.when():
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(when, self._on_timer, loop)

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        following = self.scheduler.expire()
        if following is not None and not self.scheduler.closed:
            self._arm(loop, following)

    def _deliver(self, requests: list[Pending]) -> bool:
        """From any thread: one call per event loop hands these answered requests to their callers;
        a blocked thread's request (submit_blocking) is released at once. True when a loop (or a
        blocked caller's ThreadGate) will settle the scheduler once they are handed out."""
        groups: dict[asyncio.AbstractEventLoop, list[Pending]] = {}
        blocked: list[_Blocked] = []
        for request in requests:
            waiter = request.waiter
            if waiter.__class__ is _Blocked:
                blocked.append(waiter)
            else:
                loop = waiter.get_loop()
                answered = groups.get(loop)
                if answered is None:
                    groups[loop] = [request]
                else:
                    answered.append(request)
        for waiter in blocked:  # a gated caller counts as working from now: no early settle
            waiter.release()
        posted = False
        for loop, answered in groups.items():
            try:
                loop.call_soon_threadsafe(self._resolve, answered)
                posted = True
            except RuntimeError:  # the event loop is closed: nobody waits for these any more
                pass
        return posted or any(waiter.gate is not None for waiter in blocked)

    def _resolve(self, requests: list[Pending]) -> None:
        """On the callers' loop: set their futures, then settle once the loop is idle."""
        for request in requests:
            future = request.waiter
            if future.done():  # cancelled meanwhile
                continue
            if request.error is not None:
                future.set_exception(request.error)
            else:
                future.set_result(request.result)
        if not call_when_idle(self.scheduler.settle, key=self):
            self.scheduler.settle()

    # -- the instances ---------------------------------------------------------------------------

    def _serve(self, instance: int) -> None:
        """An instance's thread: take a batch from the scheduler, compute it, report, again."""
        while (batch := self.scheduler.next_batch(instance)) is not None:
            merging = time.perf_counter()
            try:
                inputs = [r.inputs for r in batch]
                held = self._buffers[instance]
                if len(inputs) > 1:
                    held = self._buffers[instance] = buffer_for(held, inputs[0], self.settings.max_batch_size)
                x, rows = merge(inputs, held)
                start = time.perf_counter()
                outputs = self.compute(instance, x)
                done = time.perf_counter()
                try:
                    results = split(outputs, rows)
                except ValueError as exc:
                    raise RuntimeError(str(exc)) from None
            except Exception as exc:
                self.scheduler.finish(instance, batch, None, exc)
                continue
            self.scheduler.finish(instance, batch, results, input_s=start - merging, infer_s=done - start)


class ThreadGate:
    """The handler threads of a synchronous transport that are working on a request outside the
    queue (decoding, encoding): once none is, every request that reached them is queued and every
    result handed out, so the queues they feed are settled (the threads' counterpart of an idle
    event loop). A handler ``enter``s when it starts and ``leave``s when it ends; in between,
    ``submit_blocking`` has it leave while it waits in a queue and enter again when answered."""

    def __init__(self) -> None:
        self.working = 0
        self._lock = threading.Lock()
        self._queues: weakref.WeakSet[BatchQueue] = weakref.WeakSet()

    def feeds(self, queue: BatchQueue) -> None:
        """``queue`` is fed by these threads (from its first request on): settled by them."""
        if queue not in self._queues:
            with self._lock:
                self._queues.add(queue)

    def enter(self, count: int = 1) -> None:
        with self._lock:
            self.working += count

    def __enter__(self) -> ThreadGate:
        self.enter()
        return self

    def __exit__(self, *exc_info) -> None:
        self.leave()

    def leave(self) -> None:
        with self._lock:
            self.working -= 1
            queues = list(self._queues) if self.working == 0 else ()
        for queue in queues:
            queue.scheduler.settle()
