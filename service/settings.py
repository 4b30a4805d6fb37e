"""The server's typed settings that more than one module declares or checks, declared once here.

``BatchSettings`` is how one model batches (config.json's ``batching`` block); the server's
batching flags, the per-model overrides and the exporter's defaults are derived from it.
"""
from __future__ import annotations

from dataclasses import dataclass

from .priority import PrioritySettings


@dataclass(frozen=True)
class BatchSettings:
    """How one model batches: the fields of config.json's ``batching`` block (DESIGN.md)."""

    max_batch_size: int = 64
    max_queue_delay_ms: float = 0.0
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int = 1024
    instances: int = 1
    priority: PrioritySettings = PrioritySettings()

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
