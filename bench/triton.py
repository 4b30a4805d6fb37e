"""The real Triton Inference Server (2.51, from the nvidia-pytriton wheel) as a benchmark peer.

    install = prepare()                                  its own venv under ~/.cache/convnet-bench/triton,
                                                         made once (pip) and reused
    server = TritonServer.start(install, repo, workdir, cores=frozenset({1}))
    server.grpc_port, server.http_port, server.metrics_port, server.pid
    server.ok_requests(model), server.failed_requests(model)     from its own metrics
    server.stop()                                        SIGTERM by PID, then its /dev/shm regions removed

The venv pins ``nvidia-pytriton==0.7.0`` (which pins numpy<2, hence its own venv), the project's
onnxruntime version and tritonclient. The server binary, its libraries and its Python backend come
from the wheel; the model step is bench/triton_model.py in the Python backend (bench/triton_repo.py
builds the repository). Facts of the setup: ../shared/triton.md.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench import scrape
from bench.launcher import NotReady, on_cores, wait_until

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "convnet-bench" / "triton"
PYTRITON = "nvidia-pytriton==0.7.0"
PREPARED = "prepared.json"
SHM = Path("/dev/shm")
SHM_BYTES = 64 * 1024 * 1024
"""Each Python-backend instance's shared-memory region, and its growth step: a batch of 64 224x224
images (38 MB) fits without growing it (pages are only used as touched)."""
ABOUT = ("import json, sys, sysconfig, site, onnxruntime; print(json.dumps({'site': site.getsitepackages()[0], "
         "'version': f'{sys.version_info[0]}.{sys.version_info[1]}', 'libdir': sysconfig.get_config_var('LIBDIR'), "
         "'shared': bool(sysconfig.get_config_var('Py_ENABLE_SHARED')), 'onnxruntime': onnxruntime.__version__}))")


def requirements() -> list[str]:
    """What the Triton venv holds: the pinned wheel, this project's onnxruntime version, tritonclient."""
    import onnxruntime

    return [PYTRITON, f"onnxruntime=={onnxruntime.__version__}", "tritonclient[grpc,http]"]


@dataclass(frozen=True)
class TritonInstall:
    """A prepared Triton venv: where its server binary, libraries and Python backend are."""

    venv: Path
    site: Path
    python_version: str
    python_libdir: str  # the interpreter's LIBDIR when it is a shared build (the stub links libpython), else ""
    onnxruntime: str

    @property
    def server_dir(self) -> Path:
        return self.site / "pytriton" / "tritonserver"

    @property
    def binary(self) -> Path:
        return self.server_dir / "bin" / "tritonserver"

    @property
    def backends(self) -> Path:
        """A backend directory of its own: Triton's Python backend with the stub of this Python beside it."""
        return self.venv.parent / "backends"

    def environment(self) -> dict[str, str]:
        """The server's environment: the wheel's libraries found, the venv's python3 first on PATH
        (the stub's embedded interpreter finds numpy and onnxruntime through it), one OpenMP thread."""
        libraries = [p for p in (self.python_libdir, str(self.site / "nvidia_pytriton.libs")) if p]
        return {**os.environ, "LD_LIBRARY_PATH": ":".join(libraries), "OMP_NUM_THREADS": "1",
                "PATH": f"{self.venv / 'bin'}:{os.environ.get('PATH', '')}"}


def run(command: list, log: Path) -> str:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=1800)
    with open(log, "a") as f:
        f.write(f"$ {' '.join(map(str, command))}\n{done.stdout}{done.stderr}\n")
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} failed with {done.returncode}:\n{done.stderr[-3000:]}")
    return done.stdout


def prepare(cache: Path = CACHE, say=print) -> TritonInstall:
    """The Triton venv under ``cache``: made (python -m venv, pip install) when missing or when its
    requirements changed, under a lock so two runs do not make it at once; then its backend directory."""
    cache.mkdir(parents=True, exist_ok=True)
    venv, wanted = cache / "venv", requirements()
    python = venv / "bin" / "python"
    with open(cache / "prepare.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = cache / PREPARED
        if not marker.exists() or json.loads(marker.read_text()).get("requirements") != wanted:
            log = cache / "prepare.log"
            say(f"triton: preparing {venv} ({', '.join(wanted)}; log: {log})")
            marker.unlink(missing_ok=True)
            if not python.exists():
                run([sys.executable, "-m", "venv", venv], log)
            run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *wanted], log)
            marker.write_text(json.dumps({"requirements": wanted}) + "\n")
        about = json.loads(run([python, "-c", ABOUT], cache / "prepare.log"))
        install = TritonInstall(venv, Path(about["site"]), about["version"],
                                about["libdir"] if about["shared"] else "", about["onnxruntime"])
        stub = install.server_dir / "python_backend_stubs" / install.python_version / "triton_python_backend_stub"
        if not (install.backends / "python" / stub.name).exists():
            shutil.rmtree(install.backends, ignore_errors=True)
            shutil.copytree(install.server_dir / "backends" / "python", install.backends / "python")
            shutil.copy2(stub, install.backends / "python" / stub.name)
    return install


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports free at this moment (bound to port 0, then released)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


@dataclass
class TritonServer:
    """A running tritonserver process serving a repository on loopback ports."""

    process: subprocess.Popen
    grpc_port: int
    http_port: int
    metrics_port: int
    shm_prefix: str
    log_path: Path
    started_with: tuple = ()  # start()'s arguments, for restart()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_target(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @classmethod
    def start(cls, install: TritonInstall, repo: Path, workdir: Path, cores: frozenset[int] | None = None,
              name: str = "triton", timeout: float = 180, attempts: int = 2) -> "TritonServer":
        """Start Triton on ``cores`` for every model of ``repo`` and wait until each model is ready.
        A start that fails (Triton 2.51 has aborted while loading models here, rarely) is tried again,
        up to ``attempts`` times, its log's tail printed."""
        for attempt in range(1, attempts + 1):
            try:
                return cls._start(install, repo, workdir, cores, f"{name}-{attempt}" if attempt > 1 else name, timeout)
            except NotReady as exc:
                if attempt == attempts:
                    raise
                print(f"{name}: start {attempt} failed, once more: {str(exc)[-1500:]}", file=sys.stderr, flush=True)
        raise AssertionError("unreachable")

    @classmethod
    def _start(cls, install: TritonInstall, repo: Path, workdir: Path, cores: frozenset[int] | None, name: str,
               timeout: float) -> "TritonServer":
        workdir.mkdir(parents=True, exist_ok=True)
        grpc_port, http_port, metrics_port = free_ports(3)
        prefix = f"convnet-bench-{uuid.uuid4().hex[:12]}-"
        log_path = workdir / f"{name}.log"
        command = [install.binary, f"--model-repository={repo}", f"--backend-directory={install.backends}",
                   f"--cache-directory={install.server_dir / 'caches'}", "--grpc-address=127.0.0.1",
                   "--http-address=127.0.0.1", "--metrics-address=127.0.0.1", f"--grpc-port={grpc_port}",
                   f"--http-port={http_port}", f"--metrics-port={metrics_port}", "--allow-gpu-metrics=false",
                   "--exit-timeout-secs=10", f"--backend-config=python,shm-region-prefix-name={prefix}",
                   f"--backend-config=python,shm-default-byte-size={SHM_BYTES}",
                   f"--backend-config=python,shm-growth-byte-size={SHM_BYTES}"]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(on_cores([str(c) for c in command], cores), stdout=log, stderr=subprocess.STDOUT,
                                       env=install.environment())
        server = cls(process, grpc_port, http_port, metrics_port, prefix, log_path,
                     (install, repo, workdir, cores, name, timeout))
        models = sorted(p.name for p in repo.iterdir() if (p / "config.pbtxt").is_file())
        base = f"http://{server.http_target}/v2"
        try:
            wait_until(lambda: http_ok(f"{base}/health/ready") and all(http_ok(f"{base}/models/{m}/ready")
                                                                        for m in models),
                       f"{name}: Triton ready with {', '.join(models)}", timeout, process, log_path)
        except BaseException:
            server.stop()
            raise
        return server

    def restart(self) -> "TritonServer":
        """A new server started as this one was (on new ports), after this one is stopped."""
        self.stop()
        install, repo, workdir, cores, name, timeout = self.started_with
        return TritonServer.start(install, repo, workdir, cores, f"{name}-restarted", timeout)

    def metric(self, name: str, **labels: str) -> float:
        """A counter of Triton's metrics page (prometheus_client's parser may name its samples ``*_total``)."""
        text = scrape.scrape(self.metrics_port)
        return scrape.metric(text, name, **labels) + scrape.metric(text, f"{name}_total", **labels)

    def ok_requests(self, model: str) -> float:
        return self.metric("nv_inference_request_success", model=model)

    def failed_requests(self, model: str) -> float:
        return self.metric("nv_inference_request_failure", model=model)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM to its PID, SIGKILL after ``timeout`` s; then its shared-memory regions are removed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for region in SHM.glob(f"{self.shm_prefix}*"):
            region.unlink(missing_ok=True)
        return self.process.returncode

