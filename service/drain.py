"""Shutdown in phases, so that no caller gets CANCELLED or UNKNOWN from a stopping server: the
server's lifecycle (service.admission.Lifecycle) as the event loop waits on it.

grpc's ``server.stop(grace)`` shuts the transport at once: calls that have reached the process but
not yet a handler are cancelled (CANCELLED), and with nothing queued yet the old stop returned in
milliseconds. Here the transport stays open until the inference calls are over:

SERVING -> DRAINING (SIGTERM; not ready, new calls still served for ``drain_s`` so load balancers
notice) -> CLOSING (new inference calls answered UNAVAILABLE by the admission, open streams finish
what they took and end UNAVAILABLE; wait until no inference call is left) -> CLOSED (the batch
queues closed) -> STOPPED (then the transport stops). ``Drain`` lets the server's stop, the
streams and the health watches await those moments.
"""
from __future__ import annotations

import asyncio
import time
from typing import Callable

from .admission import SHUTTING_DOWN, Lifecycle, Stage

Phase = Stage
__all__ = ["Drain", "Phase", "SHUTTING_DOWN", "QUIET_S"]

QUIET_S = 0.1
"""The transport stops only once no call has arrived for this long (or the grace is over): calls on
their way when it stops would be cancelled, and this lets them be answered UNAVAILABLE instead."""


class Drain:
    """Awaitable moments of ``lifecycle``: closing, stopped, idle (no inference call in flight), quiet."""

    def __init__(self, lifecycle: Lifecycle):
        self.lifecycle = lifecycle

    @property
    def phase(self) -> Stage:
        return self.lifecycle.stage

    @property
    def inflight(self) -> int:
        return self.lifecycle.inflight

    def advance(self, phase: Stage) -> None:
        self.lifecycle.advance(phase)

    async def closing(self) -> None:
        """Returns once new requests are refused (CLOSING): open streams end then."""
        await self._until(lambda: self.lifecycle.refusing)

    async def stopped(self) -> None:
        """Returns once the transport is about to stop (STOPPED)."""
        await self._until(lambda: self.lifecycle.stage >= Stage.STOPPED)

    async def idle(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` s (None: as long as it takes) until no inference call is in flight;
        True if none is."""
        return await self._until(lambda: self.lifecycle.inflight == 0, timeout, idle=True)

    async def quiet(self, until: float) -> None:
        """Wait until no call has arrived for QUIET_S seconds, or the monotonic time ``until``."""
        while (now := time.monotonic()) < until and now - self.lifecycle.last_call < QUIET_S:
            await asyncio.sleep(min(QUIET_S - (now - self.lifecycle.last_call), until - now))

    async def _until(self, condition: Callable[[], bool], timeout: float | None = None, idle: bool = False) -> bool:
        """Wait until ``condition`` holds, woken by the lifecycle (from any thread); False on timeout."""
        if condition():
            return True
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(changed.set)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

        unwatch = self.lifecycle.watch(wake, idle=idle)
        end = None if timeout is None else loop.time() + max(0.0, timeout)
        try:
            while not condition():
                try:
                    await asyncio.wait_for(changed.wait(), None if end is None else max(0.0, end - loop.time()))
                except TimeoutError:
                    return condition()
                changed.clear()
            return True
        finally:
            unwatch()
