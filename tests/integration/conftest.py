"""Fixtures for tests against a running server (the server fixtures live in tests/conftest.py).

    reference(model, x, version=None) -> scores   the NumPy forward pass from the repository's
                                                  weights (exporter.repository), loaded once per model
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from exporter.repository import check_input, load_reference


@pytest.fixture(scope="session")
def reference(model_repo):
    loaded = {}

    def forward(model: str, x: np.ndarray, version: int | None = None) -> np.ndarray:
        if (model, version) not in loaded:
            loaded[model, version] = load_reference(Path(model_repo) / model, version)
        network, params, config = loaded[model, version]
        return network.predict(check_input(x, config), params)

    return forward
