"""One admission path for every transport: the server's lifecycle, the bearer token, the drain gate
and the per-class call limits, decided once for a ``Call`` whatever carried it.

The gRPC interceptor (service.guard.AdmissionInterceptor) and the aiohttp middleware
(service.http.app.guard) each describe a call (its kind, name and ``authorization`` values), ask
``Admission.admit`` and turn a ``Refusal`` into their own status; a ``Ticket`` gives the call's
places back when it ends. Plain threads-and-locks code, no asyncio, so that a synchronous gRPC
server's interceptor can adapt it as well. ``Lifecycle`` is the one state every readiness answer
reads (HTTP and KServe ready, gRPC health, the page); connection limits are per port
(service.connections).
"""
from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass
from typing import Callable

import grpc

from .auth import BearerToken
from .limits import CHECKS, DESCRIPTIONS, GUARDED, WATCHES, Pool

SHUTTING_DOWN = "the server is shutting down and accepts no new requests; retry on another replica"


class Stage(enum.IntEnum):
    """SERVING -> DRAINING (SIGTERM: not ready, calls still served) -> CLOSING (new inference calls
    refused, those in flight finish) -> CLOSED (the batch queues are closed) -> STOPPED (the
    transports stop). Never back."""

    SERVING = 0
    DRAINING = 1
    CLOSING = 2
    CLOSED = 3
    STOPPED = 4


class Lifecycle:
    """The server's stage and its inference calls in flight; thread-safe. ``watch`` registers a
    callback run (in the advancing thread) on every advance, or, with ``idle``, whenever no
    inference call is left in flight."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._stage = Stage.SERVING
        self._lock = threading.Lock()
        self.inflight = 0
        self.last_call = clock()
        self._on_advance: list[Callable[[], None]] = []
        self._on_idle: list[Callable[[], None]] = []

    @property
    def stage(self) -> Stage:
        return self._stage

    @property
    def serving(self) -> bool:
        """Ready: what every readiness answer says."""
        return self._stage == Stage.SERVING

    @property
    def refusing(self) -> bool:
        """New inference calls are refused (UNAVAILABLE)."""
        return self._stage >= Stage.CLOSING

    def advance(self, stage: Stage) -> None:
        with self._lock:
            if stage <= self._stage:
                return
            self._stage = stage
            callbacks = list(self._on_advance)
        for callback in callbacks:
            callback()

    def watch(self, callback: Callable[[], None], idle: bool = False) -> Callable[[], None]:
        """Run ``callback`` on every advance (or every time the calls in flight reach 0); returns
        the function that stops it."""
        callbacks = self._on_idle if idle else self._on_advance
        with self._lock:
            callbacks.append(callback)

        def unwatch() -> None:
            with self._lock:
                if callback in callbacks:
                    callbacks.remove(callback)

        return unwatch

    def touch(self) -> None:
        """A call arrived (any call: the transport stops only after a quiet moment)."""
        self.last_call = self.clock()

    def enter(self) -> bool:
        """Count one more inference call in flight; False (and nothing counted) once refusing."""
        with self._lock:
            if self._stage >= Stage.CLOSING:
                return False
            self.inflight += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.inflight -= 1
            callbacks = list(self._on_idle) if self.inflight == 0 else ()
        for callback in callbacks:
            callback()


INFERENCE, TOKEN_GUARDED, HEALTH_CHECK, HEALTH_WATCH = "inference", "guarded", "check", "watch"
POOL_OF = {INFERENCE: GUARDED, TOKEN_GUARDED: GUARDED, HEALTH_CHECK: CHECKS, HEALTH_WATCH: WATCHES}
"""Every kind of call and the call-limit pool it takes a place in; checks and watches need no token."""


@dataclass(frozen=True)
class Call:
    """What admission needs to know of a call: its kind, its name (gRPC method or HTTP path) and the
    values of its ``authorization`` metadata or header."""

    kind: str
    name: str
    authorization: tuple[str, ...] = ()


class Refusal(Exception):
    """The call is not admitted: the status code (each transport maps it) and the message."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Ticket:
    """A call's places (in flight, a pool slot); ``release`` gives them back, once."""

    __slots__ = ("_releases",)

    def __init__(self, releases: list[Callable[[], None]]):
        self._releases = releases

    def release(self) -> None:
        releases, self._releases = self._releases, []
        for release in reversed(releases):
            release()


class Admission:
    """Token, then the drain gate, then the call's pool: the first that says no refuses the call,
    and a refused call holds nothing (``max_concurrent_rpcs`` 0: no pool limits)."""

    def __init__(self, lifecycle: Lifecycle, token: str | None = None, max_concurrent: int = 0,
                 on_refused: Callable[[Call], None] | None = None):
        self.lifecycle = lifecycle
        self.token = BearerToken(token) if token else None
        self.pools = {name: Pool(name, max_concurrent) for name in DESCRIPTIONS}
        self.on_refused = on_refused

    def admit(self, call: Call) -> Ticket:
        """The call's ticket, or raises Refusal."""
        self.lifecycle.touch()
        if self.token is not None and POOL_OF[call.kind] == GUARDED:
            why = self.token.refusal(call.authorization)
            if why is not None:
                raise Refusal(grpc.StatusCode.UNAUTHENTICATED, why)
        releases = []
        if call.kind == INFERENCE:
            if not self.lifecycle.enter():
                if self.on_refused is not None:
                    self.on_refused(call)
                raise Refusal(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
            releases.append(self.lifecycle.leave)
        pool = self.pools[POOL_OF[call.kind]]
        if pool.limit:
            if not pool.enter():
                Ticket(releases).release()
                raise Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, pool.refusal())
            releases.append(pool.leave)
        return Ticket(releases)
