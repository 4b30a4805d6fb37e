"""The data sets by name (the CLI's ``--data``): each loader returns a ``training.data.Split``.

Above the loaders (``training.digits``, ``training.fashion``), which import ``training.data``
for the Split, so the registry and the loaders do not import each other.
"""
from __future__ import annotations

from collections.abc import Callable

from .data import Split
from .digits import load_digits_split
from .fashion import load_fashion_split

DATASETS: dict[str, Callable[..., Split]] = {"digits": load_digits_split, "fashion-mnist": load_fashion_split}


def load_dataset(name: str, size: tuple[int, int], seed: int = 0, test_fraction: float = 0.2) -> Split:
    """A dataset by name (the CLI's ``--data``); an unknown name lists the known ones."""
    if name not in DATASETS:
        raise ValueError(f"--data: unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    return DATASETS[name](size=size, test_fraction=test_fraction, seed=seed)
