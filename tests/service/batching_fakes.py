"""Helpers of the batch queue's tests: a fake compute that can be held shut, an observer that
counts, and a wait on a condition of the queue (never a bare sleep)."""
from __future__ import annotations

import asyncio
import threading

import numpy as np

from service.batching import BatchObserver, BatchQueue
from service.settings import BatchSettings


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
    model.started = threading.Semaphore(0)  # batches that started earlier do not count
    task = asyncio.create_task(queue.submit(images(1, seed=999)))
    await model.wait_started()
    return task


async def until(predicate, timeout=30.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "condition never became true"
        await asyncio.sleep(0.001)


def queue_of(compute, observer: BatchObserver | None = None, **settings) -> BatchQueue:
    """A queue named "m" over ``compute`` with these batch settings."""
    return BatchQueue(compute, BatchSettings(**settings), name="m", observer=observer)


async def held_queue(model: FakeModel, observer: BatchObserver | None = None,
                     **settings) -> tuple[BatchQueue, asyncio.Task]:
    """A queue over ``model`` whose (single) instance is kept busy by one request: its task."""
    queue = queue_of(model, observer, **settings)
    return queue, await hold(model, queue)


async def pile_up(queue: BatchQueue, xs: list[np.ndarray]) -> list[asyncio.Task]:
    """Submit every x at once; return their tasks once all of them wait in the queue."""
    tasks = [asyncio.create_task(queue.submit(x)) for x in xs]
    await until(lambda: queue.queued_images == sum(len(x) for x in xs))
    return tasks
