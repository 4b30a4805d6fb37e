"""Shared fixtures: the default model repository and real server processes on free loopback ports.

    model_repo                      -> Path of models/ (built with `python -m training defaults` if missing)
    start_server(*args, models=None, config=None, env=None, timeout=300) -> ServerProcess
                                       (function scope: every server it started is stopped after the test)
    server                          -> ServerProcess, one default server shared by the whole session

A ServerProcess (bench/launcher.py, shared with the benchmarks) runs `python -m service serve --port 0
--metrics-port 0 --ready-file ...`: the server picks free ports itself and reports them, so parallel
test runs never race for a port. The fixture waits until grpc.health.v1 answers SERVING.

Markers: every test under tests/integration/ is marked `integration` (it starts processes). A test
that takes more than 5 s carries `slow` itself (`pytest -m "not slow"` leaves it out); the
slow_marks plugin (tests/slow_marks.py) lists one that does not, and fails the run beyond 15 s.

Never import ``service.server`` or ``service.servicers.kserve`` (the KServe stubs) in the test
process: they register the same ``inference.*`` protobuf symbols as tritonclient, and one process
cannot hold both. Talk to the server over the network, as a client would.
"""
from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from bench.launcher import MODELS, ROOT, ServerProcess, launch_server

pytest_plugins = ["slow_marks"]


NO_DRAIN = {"CONVNET_DRAIN_S": "0"}
"""Test servers have no drain period unless a test asks (--drain-s or env): SIGTERM stops at once."""


def build_default_models(repo: Path = MODELS) -> Path:
    """`python -m training defaults --out REPO` under a lock (parallel sessions share models/)."""
    repo.mkdir(parents=True, exist_ok=True)
    with open(repo / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = subprocess.run([sys.executable, "-m", "training", "defaults", "--out", str(repo)], cwd=ROOT,
                                capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"python -m training defaults failed:\n{result.stdout}\n{result.stderr}"
    return repo


@pytest.fixture(scope="session")
def model_repo() -> Path:
    """The default model repository at the repository root (cifar-tiny, cifar-vgg)."""
    return build_default_models()


@pytest.fixture
def start_server(model_repo, tmp_path) -> Callable[..., ServerProcess]:
    """Factory: start_server(*cli_args, models=None, config=None, env=None, timeout=300) -> ServerProcess.

    ``config`` is a dict written as the server's TOML file (``{"model": {"cifar-tiny": {...}}}`` for
    per-model tables). Servers still running at the end of the test are stopped with SIGTERM.
    They run with no drain period (``NO_DRAIN``) unless ``env`` or a flag sets one.
    """
    started: list[ServerProcess] = []

    def start(*args: str, models: Path | None = None, config: dict | None = None,
              env: dict[str, str] | None = None, timeout: float = 300) -> ServerProcess:
        server = launch_server(tmp_path / f"server-{len(started)}", *args, models=models or model_repo,
                               config=config, env={**NO_DRAIN, **(env or {})}, timeout=timeout)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def server(model_repo, tmp_path_factory) -> ServerProcess:
    """One server on the default repository and configuration, shared by the whole session."""
    process = launch_server(tmp_path_factory.mktemp("server"), models=model_repo, env=NO_DRAIN)
    yield process
    process.stop()


def pytest_collection_modifyitems(config, items) -> None:
    """Mark every test under tests/integration/ ``integration`` (it starts processes)."""
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)
