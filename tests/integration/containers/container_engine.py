"""Helpers of the container tests: podman with runc, configured by deploy/podman/containers.conf
through CONTAINERS_CONF (docs/DEPLOY.md), and polling of observable conditions with a deadline."""
from __future__ import annotations

import os
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Callable, TypeVar

from bench.launcher import wait_until

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
CONTAINERS_CONF = ROOT / "deploy" / "podman" / "containers.conf"
LOCAL_BASE = "localhost/convnet-base:bookworm"
TOOLS_IMAGE = "localhost/convnet-test-tools:bookworm"
T = TypeVar("T")


def engine_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF), "ENGINE": "podman"}


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """Run podman; a failure raises with its stderr."""
    done = subprocess.run(["podman", *args], env=engine_env(), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return done


def wait_for(probe: Callable[[], T], timeout: float, what: str, interval: float = 0.25) -> T:
    """Poll an observable condition until it holds (a truthy result), failing after timeout seconds
    (bench.launcher.wait_until); a probe that raises counts as not yet (port closed, no container)."""
    def observed() -> T | None:
        try:
            return probe()
        except Exception:
            return None

    return wait_until(observed, what, timeout=timeout, interval=interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def image_size_mb(image: str) -> float:
    return int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout) / 1e6


def healthy(container: str) -> bool:
    """The image's own HEALTHCHECK command, run now inside the container."""
    return podman("healthcheck", "run", container, timeout=30, check=False).returncode == 0
