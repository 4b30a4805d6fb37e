"""Priority levels and queue policies for the batch queue, as Triton's dynamic batcher defines them.

``PrioritySettings`` is read from config.json's ``batching`` block (``priority_levels``,
``default_priority_level``, ``default_queue_policy``, ``priority_queue_policy``) and checked at
load; it is declared with config.json's schema (``exporter.config_schema``) and named here. ``PriorityQueue`` is the pure structure the batch queue keeps its waiting requests in: one
FIFO per level (level 1 highest), each with a second FIFO of requests that timed out under a DELAY
policy. The next batch is taken in one order: level 1's waiting requests, then its delayed ones,
then level 2's, and so on; whole requests only, stopping at the first that does not fit. With
``priority_levels`` 0 there is one level, and without a policy timeout that is today's FIFO.
It knows no event loop and no clock: callers pass ``now``.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from exporter.config_schema import DELAY, REJECT, PrioritySettings, QueuePolicy

__all__ = ["DELAY", "REJECT", "PrioritySettings", "QueuePolicy", "LevelFull", "Waiting", "PriorityQueue"]

class LevelFull(Exception):
    """A level's own ``max_queue_size`` would be exceeded; the message names the level."""


@dataclass(eq=False)
class Waiting:
    """What the queue needs of a waiting request: its images, level and when it times out.

    ``timeout_at`` is when the policy's timeout action applies (None = never); ``delayed`` is set
    once a DELAY policy has moved it behind its level's requests that have not timed out.
    """

    images: int
    level: int = 0
    timeout_at: float | None = None
    delayed: bool = False


class _Level:
    def __init__(self, policy: QueuePolicy):
        self.policy = policy
        self.waiting: collections.deque = collections.deque()
        self.delayed: collections.deque = collections.deque()
        self.images = 0


class PriorityQueue:
    """Per-level FIFOs of ``Waiting``-like items (any object with ``images``, ``level``,
    ``timeout_at`` and ``delayed``), taken highest level first."""

    def __init__(self, settings: PrioritySettings = PrioritySettings()):
        self.settings = settings
        self._levels = {level: _Level(settings.policy(level) if settings.enabled else settings.default_queue_policy)
                        for level in settings.levels}
        self.images = 0
        self._earliest = float("inf")  # no waiting item times out before this (a lower bound)

    def __len__(self) -> int:
        return sum(len(lv.waiting) + len(lv.delayed) for lv in self._levels.values())

    def __bool__(self) -> bool:
        return any(lv.waiting or lv.delayed for lv in self._levels.values())

    def __iter__(self) -> Iterator[Any]:
        """Every item, in the order batches take them."""
        for lv in self._levels.values():
            yield from lv.waiting
            yield from lv.delayed

    def level_images(self, level: int) -> int:
        return self._levels[level].images

    def policy(self, level: int) -> QueuePolicy:
        return self._levels[level].policy

    def check(self, level: int, images: int) -> None:
        """Raise LevelFull when ``images`` more would overfill the level's own ``max_queue_size``."""
        lv = self._levels[level]
        cap = lv.policy.max_queue_size
        if cap and lv.images + images > cap:
            raise LevelFull(f"priority level {level} full ({lv.images} images waiting at this level, "
                            f"its max_queue_size={cap}, request has {images})")

    def push(self, item: Any) -> None:
        lv = self._levels[item.level]
        lv.waiting.append(item)
        lv.images += item.images
        self.images += item.images
        if item.timeout_at is not None and item.timeout_at < self._earliest:
            self._earliest = item.timeout_at

    def remove(self, item: Any) -> None:
        """Take a waiting item out (withdrawn, or rejected by its owner)."""
        lv = self._levels[item.level]
        (lv.delayed if item.delayed else lv.waiting).remove(item)
        lv.images -= item.images
        self.images -= item.images

    def oldest(self) -> Any | None:
        """The item that arrived first among those the next batch starts from."""
        return next(iter(self), None)

    def expire(self, now: float) -> list[Any]:
        """Apply the timeout action to every item whose ``timeout_at`` has passed: DELAY moves it
        behind its level's other waiting items; REJECT removes it and returns it to the caller.
        Cheap while nothing is due, as it is called before every batch."""
        if now < self._earliest:
            return []
        rejected = []
        for lv in self._levels.values():
            if not any(i.timeout_at is not None and i.timeout_at <= now for i in lv.waiting):
                continue
            keep = collections.deque()
            for item in lv.waiting:
                if item.timeout_at is None or item.timeout_at > now:
                    keep.append(item)
                elif lv.policy.timeout_action == DELAY:
                    item.delayed = True
                    lv.delayed.append(item)
                else:
                    rejected.append(item)
                    lv.images -= item.images
                    self.images -= item.images
            lv.waiting = keep
        earliest = self.next_timeout()
        self._earliest = float("inf") if earliest is None else earliest
        return rejected

    def due(self, now: float) -> bool:
        """Whether ``expire(now)`` may have work to do (cheap; it may say so when it has none)."""
        return now >= self._earliest

    def take(self, cap: int, fits: Callable[[Any, list[Any]], bool] = lambda item, batch: True) -> list[Any]:
        """Pop the next batch: in priority order, whole items, at most ``cap`` images, stopping at
        the first item that would overfill it or that ``fits(item, batch)`` refuses (e.g. a
        different input shape). Call ``expire(now)`` first so timed-out items are in place."""
        batch: list[Any] = []
        total = 0
        for lv in self._levels.values():
            for fifo in (lv.waiting, lv.delayed):
                while fifo:
                    item = fifo[0]
                    if batch and (total + item.images > cap or not fits(item, batch)):
                        return batch
                    fifo.popleft()
                    lv.images -= item.images
                    self.images -= item.images
                    batch.append(item)
                    total += item.images
        return batch

    def next_timeout(self) -> float | None:
        """The earliest ``timeout_at`` among items that have not timed out yet."""
        times = [i.timeout_at for lv in self._levels.values() for i in lv.waiting if i.timeout_at is not None]
        return min(times) if times else None
