"""Fixtures of the service's unit tests."""
from __future__ import annotations

from pathlib import Path

import pytest
from tiny_models import write_model


@pytest.fixture
def tiny_repo(tmp_path) -> Path:
    """A repository holding the hand-built linear model "tiny", versions 1 and 2."""
    repo = tmp_path / "models"
    write_model(repo, "tiny", versions=(1, 2))
    return repo
