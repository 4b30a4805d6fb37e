"""Shared fixtures: the default model repository and real server processes on free loopback ports.

    model_repo                      -> Path of models/ (built with `python -m exporter defaults` if missing)
    start_server(*args, models=None, config=None, env=None, timeout=90) -> ServerProcess
                                       (function scope: every server it started is stopped after the test)
    server                          -> ServerProcess, one default server shared by the whole session

A ServerProcess runs `python -m service serve --port 0 --metrics-port 0 --ready-file ...`: the server
picks free ports itself and reports them, so parallel test runs never race for a port. The fixture
waits until grpc.health.v1 answers SERVING.

Never import ``service.server`` or ``service.servicers.kserve`` (the KServe stubs) in the test
process: they register the same ``inference.*`` protobuf symbols as tritonclient, and one process
cannot hold both. Talk to the server over the network, as a client would.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"


def build_default_models(repo: Path = MODELS) -> Path:
    """`python -m exporter defaults --out REPO` under a lock (parallel sessions share models/)."""
    repo.mkdir(parents=True, exist_ok=True)
    with open(repo / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = subprocess.run([sys.executable, "-m", "exporter", "defaults", "--out", str(repo)], cwd=ROOT,
                                capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"python -m exporter defaults failed:\n{result.stdout}\n{result.stderr}"
    return repo


@pytest.fixture(scope="session")
def model_repo() -> Path:
    """The default model repository at the repository root (cifar-tiny, cifar-vgg)."""
    return build_default_models()


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def write_config(path: Path, config: dict[str, Any]) -> Path:
    """A TOML server configuration from a dict; a dict value under "model" becomes [model.<name>]."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in config.items() if k != "model"]
    for name, table in config.get("model", {}).items():
        lines.append(f'[model."{name}"]')
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class ServerProcess:
    """A `python -m service serve` child process and how to reach it."""

    process: subprocess.Popen
    port: int
    metrics_port: int
    log_path: Path
    channels: list[grpc.Channel] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def channel(self, **options: Any) -> grpc.Channel:
        """A new insecure channel to the server (closed when the server is stopped)."""
        channel = grpc.insecure_channel(self.target, options=list(options.items()))
        self.channels.append(channel)
        return channel

    def output(self) -> str:
        """Everything the server printed so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")

    def metrics_text(self) -> str:
        import urllib.request

        with urllib.request.urlopen(self.metrics_url, timeout=10) as reply:
            return reply.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples named ``name`` whose labels include ``labels`` (0 when none)."""
        from prometheus_client.parser import text_string_to_metric_families

        total = 0.0
        for family in text_string_to_metric_families(self.metrics_text()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def health(self, service: str = "") -> str:
        stub = health_pb2_grpc.HealthStub(self.channel())
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Signal the server and wait for it to exit; returns its exit status."""
        for channel in self.channels:
            channel.close()
        self.channels.clear()
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                raise AssertionError(f"server did not stop within {timeout} s after {signal.Signals(sig).name}:\n"
                                     + self.output()[-4000:])
        return self.process.returncode


def launch_server(workdir: Path, *args: str, models: Path | None = None, config: dict | None = None,
                  env: dict[str, str] | None = None, timeout: float = 90) -> ServerProcess:
    """Start `python -m service serve` with ``args`` (extra CLI flags), wait for SERVING."""
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / "ready.json"
    log_path = workdir / "server.log"
    command = [sys.executable, "-m", "service", "serve", "--port", "0", "--metrics-port", "0",
               "--ready-file", str(ready), "--models", str(models or MODELS)]
    if config is not None:
        command += ["--config", str(write_config(workdir / "server.toml", config))]
    command += list(args)
    # No drain period unless a test asks (--drain-s or env): a test's SIGTERM then stops at once.
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "CONVNET_DRAIN_S": "0", **(env or {})}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=environment)
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode} before serving:\n{log_path.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"server not ready within {timeout} s:\n{log_path.read_text()}")
        time.sleep(0.05)
    info = json.loads(ready.read_text())
    server = ServerProcess(process, info["port"], info["metrics_port"], log_path)
    while True:
        try:
            if server.health() == "SERVING":
                return server
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            server.stop(signal.SIGKILL)
            raise AssertionError(f"server never reported SERVING:\n{server.output()}")
        time.sleep(0.05)


@pytest.fixture
def start_server(model_repo, tmp_path) -> Callable[..., ServerProcess]:
    """Factory: start_server(*cli_args, models=None, config=None, env=None, timeout=90) -> ServerProcess.

    ``config`` is a dict written as the server's TOML file (``{"model": {"cifar-tiny": {...}}}`` for
    per-model tables). Servers still running at the end of the test are stopped with SIGTERM.
    """
    started: list[ServerProcess] = []

    def start(*args: str, models: Path | None = None, config: dict | None = None,
              env: dict[str, str] | None = None, timeout: float = 90) -> ServerProcess:
        server = launch_server(tmp_path / f"server-{len(started)}", *args, models=models or model_repo,
                               config=config, env=env, timeout=timeout)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def server(model_repo, tmp_path_factory) -> ServerProcess:
    """One server on the default repository and configuration, shared by the whole session."""
    process = launch_server(tmp_path_factory.mktemp("server"), models=model_repo)
    yield process
    process.stop()
