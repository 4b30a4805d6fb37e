"""The server: loads the repository, serves the APIs over gRPC and HTTP, /metrics, stops cleanly.

Start-up: load and warm every model, bind the gRPC port (the own API, KServe v2, grpc.health.v1,
reflection; grpcio's synchronous server, service.grpc_transport), the metrics port and the HTTP
port (KServe v2 REST and the page, service/http, on the event loop), mark
health SERVING, print the summary. Stop (SIGINT or
SIGTERM), in the phases of service.drain: health NOT_SERVING at once; new requests still served
for ``drain_s``; then new requests UNAVAILABLE and open streams ended UNAVAILABLE once their
outstanding requests are answered; every request already in is finished; the transport stops
last; exit status 0 within ``shutdown_grace_s`` of the signal. A second signal ends the drain
period at once, a third answers whatever is left UNAVAILABLE at once. SIGHUP reloads the
repository while serving and is ignored (and logged) while starting or stopping.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TextIO

from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .config import ServerConfig
from .connections import ConnectionCaps, grpc_connection_options, grpc_options, raise_open_files_limit
from .admission import Admission, Call, Lifecycle
from .drain import Drain, Phase
from .faults import slow_load
from .signals import early_signals
from .summary import address, startup_summary, write_ready_file
from .generated.convnet.v1 import convnet_pb2, convnet_pb2_grpc
from .generated.inference import grpc_service_pb2, grpc_service_pb2_grpc
from .metrics import UNKNOWN_MODEL, Metrics
from .auth import TokenError, load_token
from .guard import AdmissionGuard
from .grpc_transport import Transport
from .http.access import ssl_context
from .http.app import make_app
from .http.port import HttpServer
from .http.connections import Connections
from .http.metrics_port import metrics_app
from .http.console import Console
from .http.routes import Routes
from .control import ModelControl
from .models import ModelRegistry
from .reload import Reloader, repository_signatures
from .servicers.classifier import ClassifierServicer
from .servicers.kserve import KServeServicer
from .tls import TLSError, server_credentials

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_NAMES = (
    convnet_pb2.DESCRIPTOR.services_by_name["Classifier"].full_name,
    grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    reflection.SERVICE_NAME,
)
INFERENCE_METHODS = ("/convnet.v1.Classifier/Classify", "/inference.GRPCInferenceService/ModelInfer",
                     "/inference.GRPCInferenceService/ModelStreamInfer")
"""The calls the drain counts and refuses (ClassifyStream included); health, metadata and
reflection keep answering until the transport stops."""
WATCHES = ("/grpc.health.v1.Health/Watch",)
"""Response streams that never end by themselves: ended UNAVAILABLE when the transport stops."""
REFUSED_API = {"Classify": "classify", "ClassifyStream": "classify_stream", "ModelInfer": "kserve"}
QUIET_MAX_S = 1.0
"""Longest wait for a pause in arriving calls before the transport stops (clients that retry at
once on the same server never pause); calls it then finds in a handler still finish."""


class StartupError(RuntimeError):
    """The server cannot start (a port in use, no model repository); the message says why."""


class Server:
    """One running server; ``await start()``, then ``await stop()``."""

    def __init__(self, config: ServerConfig, reuse_port: bool = False):
        self.config = config
        self.reuse_port = reuse_port
        self.metrics = Metrics()
        self.registry: ModelRegistry | None = None
        self.grpc: Transport | None = None
        self.health = health.HealthServicer()
        self.lifecycle = Lifecycle()
        self.drain = Drain(self.lifecycle)
        self._hurry = asyncio.Event()
        self.kserve: KServeServicer | None = None
        self.decoder = ThreadPoolExecutor(min(4, os.cpu_count() or 1), thread_name_prefix="decode")
        self.reloader: Reloader | None = None
        self.admission: Admission | None = None
        self.port = 0
        self.metrics_port = 0
        self.http_port = 0
        self.http: HttpServer | None = None
        self.routes: Routes | None = None
        self._metrics_http: HttpServer | None = None
        self.open_files = 0
        self.caps: ConnectionCaps | None = None

    async def start(self) -> None:
        config = self.config
        self.health.set("", NOT_SERVING)
        try:
            credentials = server_credentials(config.tls_cert, config.tls_key, config.tls_client_ca)
            token = load_token(config.auth_token, config.auth_token_file)
        except (TLSError, TokenError) as exc:
            raise StartupError(str(exc)) from None
        log.info("loading the models of %s", config.models)
        signatures = repository_signatures(config.models)  # before loading: a file changed meanwhile is retried
        try:
            await asyncio.to_thread(slow_load)
            self.registry = await asyncio.to_thread(ModelRegistry.load, config, self.metrics, self.lifecycle)
        except ValueError as exc:  # RepositoryError: no such directory
            raise StartupError(str(exc)) from None
        self.open_files = raise_open_files_limit()
        self.caps = caps = ConnectionCaps.derive(self.open_files, config.http_max_connections,
                                                 config.grpc_max_connections, config.metrics_max_connections)
        self.admission = Admission(self.lifecycle, token, config.max_concurrent_rpcs, on_refused=self._refused)
        self.grpc = Transport(
            config.grpc_handler_threads, asyncio.get_running_loop(),
            AdmissionGuard(self.admission, INFERENCE_METHODS, watches=WATCHES),
            grpc_options(config.max_message_bytes, self.reuse_port) + grpc_connection_options(config, caps.grpc))
        self.reloader = Reloader(self.registry, config, self.metrics, on_change=self.update_health, signatures=signatures)
        control = ModelControl(self.reloader, config.model_control)
        self.kserve = KServeServicer(self.registry, config, self.metrics, control, self.grpc.gate)
        self.grpc.add(convnet_pb2_grpc.add_ClassifierServicer_to_server,
                      ClassifierServicer(self.registry, config, self.metrics, self.decoder, self.drain, self.grpc.gate))
        self.grpc.add(grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server, self.kserve)
        self.grpc.add(health_pb2_grpc.add_HealthServicer_to_server, self.health)
        reflection.enable_server_reflection(SERVICE_NAMES, self.grpc)
        try:
            where = address(config.host, config.port)
            self.port = (self.grpc.server.add_secure_port(where, credentials) if credentials
                         else self.grpc.server.add_insecure_port(where))
        except RuntimeError as exc:
            raise StartupError(f"cannot listen on {address(config.host, config.port)} (gRPC): {exc}") from None
        try:
            self._metrics_http = HttpServer(metrics_app(self.metrics.registry), 1.0, self._connections("metrics", caps.metrics))
            await self._metrics_http.start(config.host, config.metrics_port, None)
            self.metrics_port = self._metrics_http.port
        except OSError as exc:
            raise StartupError(f"cannot listen on {address(config.host, config.metrics_port)} (metrics): "
                               f"{exc.strerror}") from None
        self.routes = Routes(self.registry, config, self.metrics, self.decoder, self.kserve.control)
        console = Console(self.registry, self.metrics, config.models, self.decoder)
        self.http = HttpServer(make_app(self.routes, self.admission, config.max_message_bytes, [console.add_to]),
                               config.shutdown_grace_s,
                               self._connections("HTTP", caps.http))
        try:
            await self.http.start(config.host, config.http_port,
                                  ssl_context(config.tls_cert, config.tls_key, config.tls_client_ca), self.reuse_port)
        except OSError as exc:
            raise StartupError(f"cannot listen on {address(config.host, config.http_port)} (HTTP): "
                               f"{exc.strerror or exc}") from None
        self.http_port = self.http.port
        self.grpc.server.start()
        await self.update_health()
        self.reloader.start(config.reload_interval_s)

    def _connections(self, port: str, cap: int) -> Connections:
        return Connections(f"{port} port", cap, self.config.http_header_timeout_s, self.config.http_keepalive_timeout_s)

    def _refused(self, call: Call) -> None:
        """A call refused while stopping counts as UNAVAILABLE under its API (its model is not read)."""
        api = "http" if call.name.startswith("/v2/") else REFUSED_API.get(call.name.rsplit("/", 1)[-1], "other")
        self.metrics.child(self.metrics.requests, UNKNOWN_MODEL, api, "UNAVAILABLE").inc()

    async def update_health(self) -> None:
        """Health per model and overall from the models' readiness (at start and after a reload)."""
        if not self.lifecycle.serving:
            return
        for model in self.registry.models.values():
            self.health.set(model.name, SERVING if model.ready else NOT_SERVING)
        serving = any(m.ready for m in self.registry.models.values())
        for name in ("", *SERVICE_NAMES[:2]):
            self.health.set(name, SERVING if serving else NOT_SERVING)

    async def stop(self, grace: float | None = None, drain_s: float | None = None) -> None:
        """Health NOT_SERVING; serve ``drain_s`` more; refuse new work; finish what is in; stop.

        Everything happens within ``grace`` seconds (``shutdown_grace_s``) of the call: what is
        still queued or computing a short margin before its end is answered UNAVAILABLE, and the
        transport stops only once no inference call is left, so that none is cancelled.
        """
        config = self.config
        grace = config.shutdown_grace_s if grace is None else grace
        end = time.monotonic() + grace
        margin = min(0.5, grace / 5)
        self.drain.advance(Phase.DRAINING)
        self.health.enter_graceful_shutdown()
        reloading = asyncio.ensure_future(self.reloader.stop()) if self.reloader is not None else None
        drain_s = min(config.drain_s if drain_s is None else drain_s, max(0.0, grace - margin))
        if drain_s > 0 and self.grpc is not None:
            log.info("draining: health NOT_SERVING, new requests still served for %g s", drain_s)
            await self._wait(self._hurry, drain_s)
        self.drain.advance(Phase.CLOSING)
        if self.drain.inflight:
            log.info("new requests now get UNAVAILABLE; finishing %d calls in flight", self.drain.inflight)
        idle = await self._wait(self._idle_or_hurry(), end - margin - time.monotonic())
        if self.registry is not None:  # what is left now gets UNAVAILABLE
            await self.registry.close(0.0)
        if not idle:
            log.warning("grace period over (or stop hurried): %d calls answered UNAVAILABLE", self.drain.inflight)
            await self.drain.idle(end - time.monotonic())
        if reloading is not None:
            await self._wait(reloading, end - time.monotonic())
        await self.drain.quiet(min(end, time.monotonic() + QUIET_MAX_S))
        self.drain.advance(Phase.STOPPED)
        if self.grpc is not None:
            await self.grpc.stop(max(0.0, end - time.monotonic()))
        if self.http is not None:
            await self.http.stop()
        if self._metrics_http is not None:
            await self._metrics_http.stop()
        self.decoder.shutdown(wait=False, cancel_futures=True)

    def hurry(self, reason: str) -> None:
        """A further stop signal: end the drain period now, or, past it, answer what is left UNAVAILABLE."""
        if self.drain.phase == Phase.DRAINING:
            log.info("%s: drain period ended early; requests already in still finish", reason)
        elif self.drain.phase == Phase.CLOSING:
            log.info("%s: stopping now; requests not yet answered get UNAVAILABLE", reason)
        else:
            log.info("%s: already stopping", reason)
        self._hurry.set()

    async def _idle_or_hurry(self) -> bool:
        """True once no inference call is in flight; returns early (False) on a further signal."""
        self._hurry.clear()
        idle = asyncio.ensure_future(self.drain.idle())
        hurried = asyncio.ensure_future(self._hurry.wait())
        await asyncio.wait({idle, hurried}, return_when=asyncio.FIRST_COMPLETED)
        hurried.cancel()
        if not idle.done():
            idle.cancel()
            return False
        return True

    @staticmethod
    async def _wait(what, timeout: float) -> bool:
        """Await an event, a coroutine or a task for at most ``timeout`` s; its result, False on timeout."""
        awaitable = what.wait() if isinstance(what, asyncio.Event) else what
        try:
            result = await asyncio.wait_for(asyncio.shield(asyncio.ensure_future(awaitable)), max(0.0, timeout))
        except TimeoutError:
            return False
        return True if result is None else bool(result)

    def summary(self) -> str:
        """The one-screen start-up summary (service.summary)."""
        return startup_summary(self.config, self.registry, self.port, self.metrics_port, self.http_port,
                               self.caps, self.open_files)


async def serve(config: ServerConfig, ready_file: Path | None = None, out: TextIO = sys.stdout,
                worker: int | None = None) -> int:
    """Run the server in the foreground until SIGINT/SIGTERM; returns the exit status. ``worker``: this
    process is that worker of a pool (service/workers.py), sharing its ports; its ready file names it.

    The signal handlers come first, before the models load: SIGHUP is then ignored (logged) until
    the server serves, and a stop signal during start-up stops it as soon as loading ends.
    """
    loop = asyncio.get_running_loop()
    server = Server(config, reuse_port=worker is not None)
    stop = asyncio.Event()

    def on_stop(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            server.hurry(name)
            return
        log.info("%s: stopping: health NOT_SERVING; new requests served for %g s more, then UNAVAILABLE; "
                 "requests already in finish within the grace (%g s). Send it again to end the drain "
                 "period at once, a third time to answer what is left UNAVAILABLE.",
                 name, min(config.drain_s, config.shutdown_grace_s), config.shutdown_grace_s)
        server.drain.advance(Phase.DRAINING)
        stop.set()

    def on_reload() -> None:
        if server.drain.phase != Phase.SERVING or server.reloader is None:
            log.warning("SIGHUP: reload ignored: the server is %s",
                        "starting" if server.drain.phase == Phase.SERVING else "stopping")
            return
        server.reloader.trigger()

    for s in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(s, on_stop, s)
    loop.add_signal_handler(signal.SIGHUP, on_reload)
    for signum in early_signals.take():  # what arrived before the event loop ran
        (on_reload() if signum == signal.SIGHUP else on_stop(signum))
    try:
        await server.start()
    except StartupError as exc:
        log.error("%s", exc)
        await server.stop(0)
        return 1
    if not stop.is_set():
        print(server.summary(), file=out, flush=True)
        if ready_file is not None:
            write_ready_file(ready_file, port=server.port, metrics_port=server.metrics_port,
                             http_port=server.http_port, **({} if worker is None else {"worker": worker}))
        await stop.wait()
        await server.stop()
    else:  # stopped during start-up: never served, so nothing to drain
        await server.stop(drain_s=0)
    log.info("stopped")
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # until the process is gone: ignored
        loop.remove_signal_handler(s)
        signal.signal(s, signal.SIG_IGN)
    return 0
