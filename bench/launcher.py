"""The one server launcher of the tests and the benchmarks, and the one way they wait on an event.

    launch_server(workdir, *flags, models=MODELS, config=None, env=None, cores=None,
                  health=True, timeout=90, name="server", python=None, cwd=ROOT,
                  http_port=True)                                     -> ServerProcess
    launch(command, workdir, name="server", env=None, cores=None,
           health=True, timeout=90, cwd=ROOT)                         -> ServerProcess
    wait_until(ready, what, timeout=30, process=None, log=None, interval=0.05) -> ready()'s first true value
    await wait_until_async(ready, what, timeout=30, interval=0.05)             -> the same, from a coroutine

``launch_server`` runs ``python -m service serve --port 0 --metrics-port 0 --http-port 0
--ready-file ...``: the server binds free ports itself and writes them to the ready file, so
parallel runs never race for a port; ``python``, ``cwd`` and ``http_port=False`` start another
checkout's server (bench/revisions.py), whose CLI may predate ``--http-port``. ``launch`` starts any such command (the echo server too), appending ``--ready-file``, waits
for that file and, with ``health``, for grpc.health.v1 to answer SERVING. ``ServerProcess.stop()``
signals it and waits for its exit.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

from bench import ROOT, scrape

MODELS = ROOT / "models"
POLL_S = 0.05

T = TypeVar("T")


class NotReady(AssertionError):
    """A process or condition waited on did not come up: it exited, or the time ran out."""



def on_cores(command: list[str], cores: frozenset[int] | set[int] | None) -> list[str]:
    """``command`` confined (with its threads and children) to ``cores`` by taskset, if given. Not a
    ``preexec_fn``: forking a process whose gRPC threads run can abort the child before it execs."""
    return ["taskset", "-c", ",".join(map(str, sorted(cores))), *command] if cores else list(command)

def wait_until(ready: Callable[[], T], what: str, timeout: float = 30.0, process: subprocess.Popen | None = None,
               log: Path | None = None, interval: float = POLL_S) -> T:
    """Check ``ready()`` every ``interval`` seconds until it returns a true value and return that;
    fail early if ``process`` exits (with the tail of ``log`` in the message). OSError from
    ``ready`` counts as not yet. ``interval=0`` checks back to back, for a state that lasts only
    milliseconds."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""
            raise NotReady(f"{what}: the process exited with code {process.returncode}:\n{tail}")
        with contextlib.suppress(OSError):
            if value := ready():
                return value
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""
            raise NotReady(f"{what}: not reached within {timeout:g} s\n{tail}")
        time.sleep(interval)


async def wait_until_async(ready: Callable[[], T], what: str, timeout: float = 30.0, interval: float = POLL_S) -> T:
    """``wait_until`` from a coroutine: the checks run in a worker thread, the event loop goes on."""
    return await asyncio.to_thread(wait_until, ready, what, timeout, None, None, interval)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def write_config(path: Path, config: dict[str, Any]) -> Path:
    """A TOML server configuration from a dict; a dict value under "model" becomes [model.<name>]."""
    lines = [f"{k} = {toml_value(v)}" for k, v in config.items() if k != "model"]
    for name, table in config.get("model", {}).items():
        lines.append(f'[model."{name}"]')
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class ServerProcess:
    """A server child process that wrote its ready file, and how to reach it."""

    process: subprocess.Popen
    port: int
    metrics_port: int
    log_path: Path
    channels: list = field(default_factory=list)
    http_port: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def channel(self, **options: Any):
        """A new insecure channel to the server (closed when the server is stopped)."""
        import grpc

        channel = grpc.insecure_channel(self.target, options=list(options.items()))
        self.channels.append(channel)
        return channel

    def output(self) -> str:
        """Everything the server printed so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")

    def metrics_text(self) -> str:
        return scrape.scrape(self.metrics_port)

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples named ``name`` whose labels include ``labels`` (0 when none)."""
        return scrape.metric(self.metrics_text(), name, **labels)

    def health(self, service: str = "") -> str:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self.channel())
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def serving(self) -> bool:
        """Whether the health service answers SERVING now (False while it cannot be reached)."""
        import grpc

        try:
            return self.health() == "SERVING"
        except grpc.RpcError:
            return False

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
                raise NotReady(f"server did not stop within {timeout} s after {signal.Signals(sig).name}:\n"
                               + self.output()[-4000:]) from None
        return self.process.returncode


def launch(command: list[str], workdir: Path, name: str = "server", env: dict[str, str] | None = None,
           cores: frozenset[int] | None = None, health: bool = True, timeout: float = 90,
           cwd: Path = ROOT) -> ServerProcess:
    """Start ``command --ready-file WORKDIR/NAME.ready.json`` in ``cwd`` (on ``cores`` only, if given),
    wait for the ready file and, with ``health``, for SERVING. Output goes to WORKDIR/NAME.log."""
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / f"{name}.ready.json"
    ready.unlink(missing_ok=True)
    log_path = workdir / f"{name}.log"
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(on_cores([*command, "--ready-file", str(ready)], cores), cwd=cwd, stdout=log,
                                   stderr=subprocess.STDOUT, env=environment)
    try:
        info = wait_until(lambda: ready.exists() and json.loads(ready.read_text()), f"{name}: the ready file",
                          timeout, process, log_path)
        server = ServerProcess(process, info["port"], info.get("metrics_port", 0), log_path,
                               http_port=info.get("http_port", 0))
        if health:
            wait_until(server.serving, f"{name}: health SERVING", timeout, process, log_path)
    except BaseException:
        process.kill()
        process.wait(10)
        raise
    return server


def serve_command(models: Path = MODELS, *flags: str, config: Path | None = None, python: str | None = None,
                  http_port: bool = True) -> list[str]:
    """``python -m service serve`` on free loopback ports for ``models``, then ``flags``; ``python``
    (default this interpreter) runs it, ``http_port=False`` leaves out ``--http-port``."""
    return [python or sys.executable, "-m", "service", "serve", "--port", "0", "--metrics-port", "0",
            *(["--http-port", "0"] if http_port else []), "--models", str(models),
            *(["--config", str(config)] if config is not None else []), *flags]


def launch_server(workdir: Path, *flags: str, models: Path | None = None, config: dict | None = None,
                  env: dict[str, str] | None = None, cores: frozenset[int] | None = None, health: bool = True,
                  timeout: float = 90, name: str = "server", python: str | None = None, cwd: Path = ROOT,
                  http_port: bool = True) -> ServerProcess:
    """Start ``python -m service serve`` with ``flags`` (and ``config``, a dict written as its TOML
    file) and wait until it serves; ``python``, ``cwd`` and ``http_port`` as serve_command and launch."""
    workdir.mkdir(parents=True, exist_ok=True)
    toml = write_config(workdir / f"{name}.toml", config) if config is not None else None
    return launch(serve_command(models or MODELS, *flags, config=toml, python=python, http_port=http_port), workdir,
                  name, env, cores, health, timeout, cwd)
