"""Learning-rate schedules: a function of the 0-based iteration (mini-batch step) number."""
from __future__ import annotations

import math
from collections.abc import Callable

Schedule = Callable[[int], float]


def constant(lr: float) -> Schedule:
    """The same rate at every step."""
    return lambda it: lr


def step_decay(lr: float, every: int, gamma: float = 0.1) -> Schedule:
    """Multiply the rate by ``gamma`` every ``every`` steps (the notes' "step decay")."""
    if every <= 0:
        raise ValueError(f"every must be a positive number of steps, got {every!r}")
    return lambda it: lr * gamma ** (it // every)


def cosine(lr: float, total: int, warmup: int = 0, min_lr: float = 0.0) -> Schedule:
    """Linear warm-up from ``lr / warmup`` over ``warmup`` steps, then a cosine from ``lr`` down to
    ``min_lr`` at step ``total``; the rate stays at ``min_lr`` afterwards."""
    if total <= 0 or not 0 <= warmup < total:
        raise ValueError(f"cosine schedule needs 0 <= warmup < total and total > 0, got warmup={warmup}, total={total}")

    def rate(it: int) -> float:
        if it < warmup:
            return lr * (it + 1) / warmup
        t = min(1.0, (it - warmup) / (total - warmup))
        return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * t))

    return rate


SCHEDULES = ("constant", "step", "cosine")


def make_schedule(name: str, lr: float, total: int, warmup: int = 0, every: int | None = None, gamma: float = 0.1) -> Schedule:
    """A schedule by name (the CLI's ``--schedule``) for a run of ``total`` steps.

    ``step`` decays by ``gamma`` every ``every`` steps (default: a third of the run).
    """
    if lr <= 0:
        raise ValueError(f"--lr must be positive, got {lr!r}")
    if name == "constant":
        return constant(lr)
    if name == "step":
        return step_decay(lr, every or max(1, total // 3), gamma)
    if name == "cosine":
        return cosine(lr, total, warmup=warmup)
    raise ValueError(f"--schedule: unknown schedule {name!r}; expected one of {list(SCHEDULES)}")
