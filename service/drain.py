"""Shutdown in phases, so that no caller gets CANCELLED or UNKNOWN from a stopping server.

grpc's ``server.stop(grace)`` shuts the transport at once: calls that have reached the process but
not yet a handler are cancelled (CANCELLED), and with nothing queued yet the old stop returned in
milliseconds. Here the transport stays open until the inference calls are over:

SERVING -> DRAINING (SIGTERM; health NOT_SERVING, new calls still served for ``drain_s`` so load
balancers notice) -> CLOSING (new inference calls answered UNAVAILABLE by this interceptor, open
streams finish what they took and end UNAVAILABLE; wait until no inference call is left) ->
STOPPED (then the transport stops). ``Drain`` is the interceptor that refuses and counts the
inference calls, and the state the server's stop and the streams read.
"""
from __future__ import annotations

import asyncio
import enum
import time
from typing import Callable

import grpc

from .guard import guarded

SHUTTING_DOWN = "the server is shutting down and accepts no new requests; retry on another replica"
QUIET_S = 0.1
"""The transport stops only once no call has arrived for this long (or the grace is over): calls on
their way when it stops would be cancelled, and this lets them be answered UNAVAILABLE instead."""


class Phase(enum.IntEnum):
    SERVING = 0
    DRAINING = 1
    CLOSING = 2
    STOPPED = 3


class Drain(grpc.aio.ServerInterceptor):
    """Counts the calls of ``gated`` methods in flight and refuses new ones from CLOSING on; ends
    the ``watches`` (response streams that never end by themselves, health Watch) with
    UNAVAILABLE when the transport is about to stop, instead of letting it wait the grace out."""

    def __init__(self, gated: tuple[str, ...], watches: tuple[str, ...] = (),
                 on_refused: Callable[[str], None] | None = None):
        self.gated = gated
        self.on_refused = on_refused
        self.watches = watches
        self._stopped = asyncio.Event()
        self.phase = Phase.SERVING
        self.inflight = 0
        self.last_call = time.monotonic()
        self._closing = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def refusing(self) -> bool:
        return self.phase >= Phase.CLOSING

    def advance(self, phase: Phase) -> None:
        """Move on to ``phase`` (never back)."""
        if phase > self.phase:
            self.phase = phase
            if phase >= Phase.CLOSING:
                self._closing.set()
            if phase >= Phase.STOPPED:
                self._stopped.set()

    async def closing(self) -> None:
        """Returns once new requests are refused (CLOSING): open streams end then."""
        await self._closing.wait()

    async def idle(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` s (None: as long as it takes) until no gated call is in flight;
        True if none is."""
        if timeout is None:
            await self._idle.wait()
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), max(0.0, timeout))
        except TimeoutError:
            return False
        return True

    async def quiet(self, until: float) -> None:
        """Wait until no call has arrived for QUIET_S seconds, or the monotonic time ``until``."""
        while (now := time.monotonic()) < until and now - self.last_call < QUIET_S:
            await asyncio.sleep(min(QUIET_S - (now - self.last_call), until - now))

    async def refuse(self, method: str, context) -> None:
        if self.on_refused is not None:
            self.on_refused(method)
        await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)

    def enter(self) -> None:
        self.inflight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    async def intercept_service(self, continuation, handler_call_details):
        self.last_call = time.monotonic()
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        if handler_call_details.method.startswith(self.gated):
            return _gated(handler, self, handler_call_details.method)
        if handler_call_details.method in self.watches:
            return _ended_at_stop(handler, self._stopped)
        return handler


def _ended_at_stop(handler: grpc.RpcMethodHandler, stopped: asyncio.Event) -> grpc.RpcMethodHandler:
    """A unary-stream coroutine handler (it writes with ``context.write``), ended UNAVAILABLE at stop."""
    behavior = handler.unary_stream

    async def ended(request, context):
        call = asyncio.ensure_future(behavior(request, context))
        stop = asyncio.ensure_future(stopped.wait())
        await asyncio.wait({call, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if call.done():
            return call.result()
        call.cancel()
        await context.abort(grpc.StatusCode.UNAVAILABLE, "the server stopped; watch another replica")

    return grpc.unary_stream_rpc_method_handler(ended, request_deserializer=handler.request_deserializer,
                                                response_serializer=handler.response_serializer)


def _gated(handler: grpc.RpcMethodHandler, drain: Drain, method: str) -> grpc.RpcMethodHandler:
    """The same handler, refused UNAVAILABLE once the drain is closing, counted while it runs."""
    async def admit(context) -> None:
        if drain.refusing:
            await drain.refuse(method, context)
        drain.enter()

    return guarded(handler, admit, drain.leave)

