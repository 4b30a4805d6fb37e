"""``serve --workers N``: N server processes share the gRPC and HTTP ports under one supervising parent.

Each worker is a whole server (``service.server.serve``) with its own onnxruntime sessions and
batch queues, started with multiprocessing's ``spawn``; it binds the pool's gRPC and HTTP ports
with SO_REUSEPORT, so the kernel spreads new connections over the workers that listen (a worker
listens only once its models are loaded). The parent imports neither grpc nor onnxruntime, and:

- reserves both ports first with SO_REUSEPORT sockets that are bound but never listen, so port 0
  becomes one free port for every worker and the ports stay the pool's while a worker restarts;
- starts the workers and waits for each one's ready file; restarts a worker that exits (at once if
  it had served, then with a doubling back-off while it fails to start); a worker that fails
  before the pool first served fails the pool (exit status 1), as a single server would;
- forwards every SIGTERM/SIGINT (as SIGTERM: a second one ends the drain period early, as on one
  server) and SIGHUP to the workers, and waits for them to drain and exit;
- serves the metrics port (service.pool_http): ``/metrics``, the sum of the workers' own, and the
  pool's health, ``/health/live`` and ``/health/ready``.

Workers run in their own process group (a terminal's Ctrl-C reaches them once, through the parent),
log as ``worker <i>``, and stop (draining as on SIGTERM) when the parent dies.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from .config import ServerConfig
from .pool_http import PoolEndpoints
from .signals import early_signals

log = logging.getLogger(__name__)

RESTART_MIN_S = 0.5
RESTART_MAX_S = 30.0
STOP_MARGIN_S = 5.0
"""Past the workers' shutdown grace, how long the parent waits before it kills what is left."""
READY_POLL_S = 0.05


class PoolError(RuntimeError):
    """The pool cannot start (a port in use); the message says why."""


def log_format(who: str) -> str:
    """The log line format of the parent (``supervisor``) and of each worker (``worker <i>``)."""
    return f"%(asctime)s %(levelname)s {who} %(name)s: %(message)s"


def restart_delay(failed_starts: int) -> float:
    """Seconds before a worker starts again: none after one that had served, then doubling with
    each start in a row that failed before serving (a broken repository must not spin)."""
    if failed_starts <= 0:
        return 0.0
    return min(RESTART_MAX_S, RESTART_MIN_S * 2 ** (failed_starts - 1))


def reserve_port(host: str, port: int, what: str) -> tuple[list[socket.socket], int]:
    """Bind (never listen) an SO_REUSEPORT socket on every address of ``host:port``; returns them
    and the port (chosen here when ``port`` is 0). A port some other process listens on is refused
    first, with a plain bind, so that the pool never joins a stranger's listeners."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise PoolError(f"cannot listen on {host}:{port} ({what}): {exc.strerror}") from None
    addresses = list(dict.fromkeys((family, address[0]) for family, _, _, _, address in infos))
    sockets: list[socket.socket] = []
    try:
        for family, ip in addresses:
            if port:
                with socket.socket(family, socket.SOCK_STREAM) as probe:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    probe.bind((ip, port))
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((ip, port))
            port = sock.getsockname()[1]
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise PoolError(f"cannot listen on {host}:{port} ({what}): {exc.strerror}") from None
    return sockets, port


def worker_config(config: ServerConfig, port: int, http_port: int, cores: int | None = None) -> ServerConfig:
    """What each worker runs with: the pool's ports, a metrics port of its own, and, unless set,
    onnxruntime intra-op threads of its share of the cores (N sessions of all cores each would
    oversubscribe them)."""
    cores = len(os.sched_getaffinity(0)) if cores is None else cores
    threads = config.intra_op_threads or max(1, cores // config.workers)
    return dataclasses.replace(config, workers=1, port=port, http_port=http_port, metrics_port=0,
                               intra_op_threads=threads)


def worker_main(config: ServerConfig, index: int, ready_file: Path, parent: Connection) -> None:
    """A worker process: a whole server on the pool's ports, in its own process group. It starts with
    SIGHUP blocked (the parent spawns it so), so that a hang-up before its handlers are in place
    waits for them instead of killing it."""
    os.setpgid(0, 0)
    early_signals.install()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})  # blocked since the spawn: recorded from now on
    logging.basicConfig(level=config.log_level.upper(), stream=sys.stderr, format=log_format(f"worker {index}"),
                        force=True)
    threading.Thread(target=_stop_when_orphaned, args=(parent,), name="parent-watch", daemon=True).start()
    from .idle import run
    from .server import serve

    out = sys.stdout if index == 0 else open(os.devnull, "w")  # one summary for the pool
    sys.exit(run(serve(config, ready_file, out, worker=index)))


def _stop_when_orphaned(parent: Connection) -> None:
    """Wait for the parent's end of the pipe to close (the parent is gone), then drain and stop."""
    try:
        parent.recv()
    except (EOFError, OSError):
        pass
    log.warning("the supervising parent is gone: stopping")
    os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class Worker:
    """One worker slot of the pool and the process that fills it now."""

    index: int
    ready_file: Path
    process: multiprocessing.process.BaseProcess | None = None
    state: str = "starting"
    """starting, serving, restarting (waiting out its back-off), exited (the pool stops)."""
    metrics_port: int = 0
    restarts: int = 0
    failed_starts: int = 0
    _alive: Connection | None = field(default=None, repr=False)
    _watch: asyncio.Task | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def describe(self) -> dict:
        return {"worker": self.index, "pid": self.pid, "state": self.state, "restarts": self.restarts,
                "metrics_port": self.metrics_port}


class Pool:
    """The supervising parent of ``config.workers`` workers; ``await run()`` returns the exit status."""

    def __init__(self, config: ServerConfig, ready_file: Path | None = None):
        self.config = config
        self.ready_file = ready_file
        self._dir = Path(tempfile.mkdtemp(prefix="convnet-workers-"))
        self.workers = [Worker(i, self._dir / f"worker-{i}.json") for i in range(config.workers)]
        self.endpoints = PoolEndpoints(self)
        self.stopping = False
        self.failed = False
        self.served = False
        self.ports = {"port": 0, "http_port": 0, "metrics_port": 0}
        self._changed = asyncio.Event()
        self._context = multiprocessing.get_context("spawn")
        self._worker_config = config

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.on_stop, signum)
        loop.add_signal_handler(signal.SIGHUP, self.on_reload)
        for signum in early_signals.take():
            self.on_reload() if signum == signal.SIGHUP else self.on_stop(signum)
        reserved: list[socket.socket] = []
        try:
            c = self.config
            for name, what in (("port", "gRPC"), ("http_port", "HTTP")):
                sockets, self.ports[name] = reserve_port(c.host, getattr(c, name), what)
                reserved += sockets
            self._worker_config = worker_config(c, self.ports["port"], self.ports["http_port"])
            try:
                self.ports["metrics_port"] = await self.endpoints.start(c.host, c.metrics_port)
            except OSError as exc:
                raise PoolError(f"cannot listen on {c.host}:{c.metrics_port} (metrics): "
                                f"{exc.strerror or exc}") from None
            for worker in self.workers:
                if not self.stopping:
                    self._start(worker)
            await self._until(lambda: self.stopping or self.failed or all(w.state == "serving" for w in self.workers))
            if not self.stopping and not self.failed:
                self.served = True
                self._announce()
                await self._until(lambda: self.stopping)
            if self.failed:
                self._stop_all()
            await self._stop_workers()
        except PoolError as exc:
            log.error("%s", exc)
            self.failed = True
        finally:
            await self.endpoints.stop()
            for sock in reserved:
                sock.close()
            shutil.rmtree(self._dir, ignore_errors=True)
        codes = [w.process.exitcode for w in self.workers if w.process is not None]
        log.info("stopped (worker exit statuses %s)", codes)
        # a worker stopped before its handlers were in place ends by the SIGTERM itself: a clean stop
        return 1 if self.failed or any(code not in (0, -signal.SIGTERM) for code in codes) else 0

    async def _until(self, done) -> None:
        while not done():
            self._changed.clear()
            await self._changed.wait()

    def _changed_now(self) -> None:
        self._changed.set()

    def _start(self, worker: Worker) -> None:
        worker.ready_file.unlink(missing_ok=True)
        watched, alive = self._context.Pipe(duplex=False)
        process = self._context.Process(target=worker_main, name=f"convnet-worker-{worker.index}",
                                        args=(self._worker_config, worker.index, worker.ready_file, watched))
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})  # the worker starts with it blocked
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
        watched.close()
        worker.process, worker._alive, worker.state, worker.metrics_port = process, alive, "starting", 0
        asyncio.get_running_loop().add_reader(process.sentinel, self._exited, worker, process)
        worker._watch = asyncio.create_task(self._await_ready(worker, process))
        log.info("worker %d: started, pid %d", worker.index, process.pid)

    async def _await_ready(self, worker: Worker, process) -> None:
        while True:
            try:
                info = json.loads(worker.ready_file.read_text())
            except (OSError, ValueError):
                info = {}
            if info.get("pid") == process.pid:
                break
            await asyncio.sleep(READY_POLL_S)
        worker.state, worker.metrics_port, worker.failed_starts = "serving", info["metrics_port"], 0
        log.info("worker %d (pid %d): serving; its own metrics on port %d", worker.index, process.pid,
                 worker.metrics_port)
        self._changed_now()

    def _exited(self, worker: Worker, process) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(process.sentinel)
        process.join()
        worker._watch.cancel()
        worker._alive.close()
        self.endpoints.exited(process.pid)
        code = process.exitcode
        how = f"exit status {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"
        was_serving, worker.metrics_port = worker.state == "serving", 0
        if self.stopping:
            worker.state = "exited"
            log.info("worker %d (pid %d): stopped (%s)", worker.index, process.pid, how)
        elif not self.served:
            worker.state, self.failed = "exited", True
            log.error("worker %d (pid %d) failed to start (%s): the pool stops", worker.index, process.pid, how)
        else:
            worker.failed_starts = 0 if was_serving else worker.failed_starts + 1
            delay = restart_delay(worker.failed_starts)
            worker.state = "restarting"
            worker.restarts += 1
            log.warning("worker %d (pid %d) exited (%s) while serving; starting it again in %g s", worker.index,
                        process.pid, how, delay)
            loop.call_later(delay, self._restart, worker)
        self._changed_now()

    def _restart(self, worker: Worker) -> None:
        if not self.stopping and worker.state == "restarting":
            self._start(worker)

    def _live(self) -> list[Worker]:
        return [w for w in self.workers if w.state in ("starting", "serving")]

    def on_stop(self, signum: int) -> None:
        """Every stop signal (SIGINT too) goes to every worker as SIGTERM: each drains as one server does."""
        if not self.stopping:
            log.info("%s: stopping the %d workers (each drains: health NOT_SERVING, requests in flight finish)",
                     signal.Signals(signum).name, len(self._live()))
        self._stop_all()

    def _stop_all(self) -> None:
        """Stop restarting; SIGTERM to every worker process."""
        self.stopping = True
        for worker in self.workers:
            if worker.state == "restarting":
                worker.state = "exited"
            elif worker.state in ("starting", "serving"):
                os.kill(worker.pid, signal.SIGTERM)
        self._changed_now()

    def on_reload(self) -> None:
        """SIGHUP to every serving worker; a starting one loads the repository as it is."""
        serving = [w for w in self.workers if w.state == "serving"]
        if self.stopping or not serving:
            log.warning("SIGHUP: reload ignored: the pool is %s", "stopping" if self.stopping else "starting")
            return
        log.info("SIGHUP: reloading workers %s", ", ".join(str(w.index) for w in serving))
        for worker in serving:
            os.kill(worker.pid, signal.SIGHUP)

    async def _stop_workers(self) -> None:
        grace = self.config.shutdown_grace_s + STOP_MARGIN_S
        try:
            await asyncio.wait_for(self._until(lambda: not self._live()), grace)
        except TimeoutError:
            for worker in self._live():
                log.error("worker %d (pid %d): still running %g s after the stop: killed", worker.index, worker.pid,
                          grace)
                worker.process.kill()
            await self._until(lambda: not self._live())

    def _announce(self) -> None:
        c, ports = self.config, self.ports
        print(f"convnet-serve pool: {len(self.workers)} workers (pids "
              f"{', '.join(str(w.pid) for w in self.workers)}) share gRPC on {c.host}:{ports['port']} and HTTP on "
              f"{c.host}:{ports['http_port']}; /metrics (their sum) and /health/ready (the pool) on "
              f"http://{c.host}:{ports['metrics_port']}; onnxruntime intra-op threads per worker "
              f"{self._worker_config.intra_op_threads}", flush=True)
        if self.ready_file is not None:
            tmp = self.ready_file.with_name(self.ready_file.name + ".tmp")
            tmp.write_text(json.dumps({"pid": os.getpid(), **ports,
                                       "workers": [w.describe() for w in self.workers]}))
            os.replace(tmp, self.ready_file)


def run_pool(config: ServerConfig, ready_file: Path | None = None) -> int:
    """``serve --workers N``: run the pool in the foreground until SIGINT/SIGTERM; the exit status."""
    logging.basicConfig(level=config.log_level.upper(), stream=sys.stderr, format=log_format("supervisor"))
    return asyncio.run(Pool(config, ready_file).run())
