"""Priority levels and queue policies for the batch queue, as Triton's dynamic batcher defines them.

``PrioritySettings`` is read from config.json's ``batching`` block (``priority_levels``,
``default_priority_level``, ``default_queue_policy``, ``priority_queue_policy``) and checked at
load. ``PriorityQueue`` is the pure structure the batch queue keeps its waiting requests in: one
FIFO per level (level 1 highest), each with a second FIFO of requests that timed out under a DELAY
policy. The next batch is taken in one order: level 1's waiting requests, then its delayed ones,
then level 2's, and so on; whole requests only, stopping at the first that does not fit. With
``priority_levels`` 0 there is one level, and without a policy timeout that is today's FIFO.
It knows no event loop and no clock: callers pass ``now``.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

REJECT, DELAY = "REJECT", "DELAY"
TIMEOUT_ACTIONS = (REJECT, DELAY)
PRIORITY_FIELDS = ("priority_levels", "default_priority_level", "default_queue_policy", "priority_queue_policy")
_POLICY_FIELDS = ("max_queue_size", "default_timeout_microseconds", "default_timeout_us", "allow_timeout_override",
                  "timeout_action")


def _int(value: Any, name: str, low: int, expected: str | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name}: expected {expected or f'an integer >= {low}'}, got {value!r}")
    return value


@dataclass(frozen=True)
class QueuePolicy:
    """One level's policy: Triton's ModelQueuePolicy.

    ``max_queue_size`` counts images, as the model's own ``max_queue_size`` does (0 = no limit of
    the level's own). ``default_timeout_us`` (0 = none) is how long a request may wait before
    ``timeout_action`` applies; ``allow_timeout_override`` lets a request's own timeout replace it.
    """

    max_queue_size: int = 0
    default_timeout_us: int = 0
    allow_timeout_override: bool = False
    timeout_action: str = REJECT

    @classmethod
    def parse(cls, raw: Any, name: str) -> "QueuePolicy":
        """A policy from its JSON object; ``name`` is the field's path for error messages."""
        if not isinstance(raw, dict):
            raise ValueError(f"{name}: expected an object with {', '.join(_POLICY_FIELDS[:1] + _POLICY_FIELDS[2:])}, "
                             f"got {raw!r}")
        unknown = sorted(set(raw) - set(_POLICY_FIELDS))
        if unknown:
            raise ValueError(f"{name}.{unknown[0]}: unknown setting; expected one of "
                             f"max_queue_size, default_timeout_us (or default_timeout_microseconds), "
                             f"allow_timeout_override, timeout_action")
        if "default_timeout_us" in raw and "default_timeout_microseconds" in raw:
            raise ValueError(f"{name}: expected one of default_timeout_us and default_timeout_microseconds "
                             f"(the same setting), got both")
        timeout = raw.get("default_timeout_us", raw.get("default_timeout_microseconds", 0))
        timeout_name = "default_timeout_us" if "default_timeout_us" in raw else "default_timeout_microseconds"
        override = raw.get("allow_timeout_override", False)
        if not isinstance(override, bool):
            raise ValueError(f"{name}.allow_timeout_override: expected true or false, got {override!r}")
        action = raw.get("timeout_action", REJECT)
        if action not in TIMEOUT_ACTIONS:
            raise ValueError(f"{name}.timeout_action: expected one of {', '.join(TIMEOUT_ACTIONS)}, got {action!r}")
        return cls(_int(raw.get("max_queue_size", 0), f"{name}.max_queue_size", 0,
                        "an integer >= 0 (images; 0 = no limit of the level's own)"),
                   _int(timeout, f"{name}.{timeout_name}", 0, "an integer >= 0 (microseconds; 0 = none)"),
                   override, action)

    def timeout(self, requested: float | None) -> float | None:
        """Seconds a request may wait before the timeout action, given its own timeout (seconds).

        With ``allow_timeout_override`` the request's own timeout replaces the policy's; without it
        the earlier of the two applies, so a request cannot wait longer than the policy allows.
        """
        policy = self.default_timeout_us / 1e6 if self.default_timeout_us else None
        if requested is None:
            return policy
        if self.allow_timeout_override or policy is None:
            return requested
        return min(requested, policy)


@dataclass(frozen=True)
class PrioritySettings:
    """The priority fields of a model's ``batching`` block; ``priority_levels`` 0 = one FIFO."""

    priority_levels: int = 0
    default_priority_level: int = 0
    default_queue_policy: QueuePolicy = QueuePolicy()
    priority_queue_policy: Mapping[int, QueuePolicy] = field(default_factory=dict, hash=False)

    def __post_init__(self):
        levels = _int(self.priority_levels, "batching.priority_levels", 0, "an integer >= 0 (0 = off)")
        if levels == 0:
            if self.default_priority_level != 0:
                raise ValueError(f"batching.default_priority_level: expected 0 (or absent) while "
                                 f"priority_levels is 0, got {self.default_priority_level!r}")
        else:
            _int(self.default_priority_level, "batching.default_priority_level", 1,
                 f"an integer in 1..priority_levels ({levels})")
            if self.default_priority_level > levels:
                raise ValueError(f"batching.default_priority_level: expected an integer in 1..priority_levels "
                                 f"({levels}), got {self.default_priority_level}")
        for level in self.priority_queue_policy:
            if not 1 <= level <= levels:
                raise ValueError(f"batching.priority_queue_policy: level {level} does not exist; expected levels "
                                 f"in 1..priority_levels ({levels})")

    @classmethod
    def parse(cls, block: Mapping[str, Any]) -> "PrioritySettings":
        """The priority settings of a ``batching`` block (other keys are ignored here)."""
        policies = block.get("priority_queue_policy", {})
        if not isinstance(policies, dict):
            raise ValueError(f"batching.priority_queue_policy: expected an object {{level: policy}}, got {policies!r}")
        parsed = {}
        for key, raw in policies.items():
            try:
                level = int(key)
            except ValueError:
                raise ValueError(f"batching.priority_queue_policy: expected integer levels as keys, got {key!r}") from None
            parsed[level] = QueuePolicy.parse(raw, f"batching.priority_queue_policy.{key}")
        default = block.get("default_queue_policy")
        return cls(block.get("priority_levels", 0), block.get("default_priority_level", 0),
                   QueuePolicy() if default is None else QueuePolicy.parse(default, "batching.default_queue_policy"),
                   parsed)

    @property
    def enabled(self) -> bool:
        return self.priority_levels > 0

    @property
    def levels(self) -> tuple[int, ...]:
        """The level numbers, highest first: (1, .., N), or (0,) for the single FIFO when off."""
        return tuple(range(1, self.priority_levels + 1)) if self.enabled else (0,)

    def level_of(self, requested: int) -> int:
        """The level of a request asking for ``requested`` (0 = the default). As Triton does, a
        value above ``priority_levels`` gets the default level; with levels off every request is 0."""
        if not self.enabled:
            return 0
        if requested <= 0 or requested > self.priority_levels:
            return self.default_priority_level
        return requested

    def policy(self, level: int) -> QueuePolicy:
        return self.priority_queue_policy.get(level, self.default_queue_policy)


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
