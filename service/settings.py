"""The settings that more than one module declares or checks, declared once here.

``BatchSettings`` is how one model batches (config.json's ``batching`` block): the server's
batching flags and the per-model overrides (``BatchingFields``, every field optional) and the
exporter's defaults (``batching_defaults``) are derived from its fields. The choices of the
provider, optimization-level and log-level settings are listed here for the configuration, the
command line and the sessions alike, with the reply's default top-k. Standard library only: the
exporter imports it too.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Callable

from .priority import PrioritySettings

PROVIDERS = ("cpu", "cuda")
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_MODEL = "fashion"
"""The trained model that ``classify`` and the page use when none is named (exporter.defaults)."""
DEFAULT_TOP_K = 5
"""Labels per image in a Classify reply when the request asks for none (top_k = 0)."""


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


BATCHING_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "max_batch_size": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "max_queue_delay_ms": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0, "a number >= 0"),
    "preferred_batch_sizes": (lambda v: all(_integer(s) and s >= 1 for s in v), "integers >= 1"),
    "max_queue_size": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "instances": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
}
"""Each batching field's check on its own and what it expects, for the settings and the overrides."""


def batching_field_error(name: str, value: Any) -> str | None:
    """What ``value`` of batching field ``name`` should have been, or None when it is fine."""
    ok, expected = BATCHING_RULES[name]
    return None if ok(value) else expected


@dataclass(frozen=True)
class BatchSettings:
    """How one model batches: the fields of config.json's ``batching`` block (DESIGN.md)."""

    max_batch_size: int = 64
    max_queue_delay_ms: float = 0.0
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int = 1024
    instances: int = 1
    priority: PrioritySettings = PrioritySettings()
    """Triton's priority fields of the block (service.priority), read there; not a server flag."""

    def __post_init__(self):
        for name in ("max_batch_size", "max_queue_size", "instances", "max_queue_delay_ms"):
            expected = batching_field_error(name, getattr(self, name))
            if expected:
                raise ValueError(f"batching.{name}: expected {expected}, got {getattr(self, name)!r}")
        sizes = tuple(self.preferred_batch_sizes)
        if batching_field_error("preferred_batch_sizes", sizes) or any(s > self.max_batch_size for s in sizes):
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


PLAIN_BATCHING = tuple((f, hint) for f, hint in zip(dataclasses.fields(BatchSettings),
                                                    typing.get_type_hints(BatchSettings).values())
                       if f.name != "priority")
"""The batching fields every model has and the server may override (the priority settings are
config.json's only, written by the operator when wanted)."""


def batching_defaults() -> dict[str, Any]:
    """The default ``batching`` block of a config.json (JSON types: a list for the sizes)."""
    defaults = BatchSettings()
    return {f.name: list(value) if isinstance(value := getattr(defaults, f.name), tuple) else value
            for f, _ in PLAIN_BATCHING}


BatchingFields = dataclasses.make_dataclass(
    "BatchingFields",
    [(f.name, hint | None, dataclasses.field(default=None)) for f, hint in PLAIN_BATCHING],
    frozen=True, namespace={"__module__": __name__, "__doc__": "The batching fields, each optional (None: not set)."})
"""Base of the server's batching flags and of the per-model overrides."""
