"""The images under test, built by a real engine (podman; container_engine.py).

``convnet_image`` runs scripts/build-image.sh (the same command users run), so the images, the
local Debian base and every layer stay in podman's store: a second session rebuilds nothing that
did not change. A missing podman fails these tests (scripts/install.sh installs it).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from container_engine import HERE, LOCAL_BASE, ROOT, TOOLS_IMAGE, engine_env, podman, unique  # noqa: E402


@pytest.fixture(scope="session")
def convnet_image() -> dict:
    """Build convnet-serve:latest with scripts/build-image.sh; the name and the seconds it took."""
    assert shutil.which("podman"), "podman is missing: bash scripts/install.sh installs it"
    start = time.monotonic()
    done = subprocess.run(["bash", str(ROOT / "scripts" / "build-image.sh")], env=engine_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-5000:]
    name = done.stdout.split()[-1]
    assert name == "convnet-serve:latest", done.stdout
    return {"name": "localhost/" + name, "build_s": time.monotonic() - start}


@pytest.fixture(scope="session")
def tools_image(convnet_image) -> str:
    """HAProxy and Prometheus from Debian's packages (test only; see Dockerfile.debian-tools)."""
    base = LOCAL_BASE if podman("image", "exists", LOCAL_BASE, check=False).returncode == 0 else "debian:bookworm-slim"
    done = subprocess.run(["nice", "-n", "10", "podman", "build", "--format", "docker", "--layers",
                           "--build-arg", f"BASE={base}", "-t", TOOLS_IMAGE,
                           "-f", str(HERE / "Dockerfile.debian-tools"), str(HERE)],
                          env=engine_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-5000:]
    return TOOLS_IMAGE


@pytest.fixture(scope="session")
def image_models(convnet_image, tmp_path_factory) -> Path:
    """The model repository baked into the image, copied out, for the reference forward pass."""
    out = tmp_path_factory.mktemp("image-models")
    name = unique("convnet-models")
    podman("create", "--name", name, convnet_image["name"])
    try:
        podman("cp", f"{name}:/models", str(out))
    finally:
        podman("rm", "-f", name, check=False)
    return out / "models"
