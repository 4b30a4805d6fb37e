"""The open connections of one HTTP port, bounded in number and in how long each may idle or dawdle.

Each connection is an aiohttp ``RequestHandler`` (``Handler``, made by the port's own listener)
that reports to its ``Connections``: opened, a byte arrived, a request went to a handler and came
back, closed. Rules (the settings are in docs/SERVICE.md "Connections"):

- a connection must send a complete request head within ``header_timeout_s`` of connecting, or of
  its first byte after a reply (slowloris: headers a byte a second are closed then);
- one idle after a reply is closed after ``keepalive_timeout_s``;
- at most ``cap`` are open; a new one beyond it closes, in this order, the oldest connection that
  never sent a complete request, or the one idle the longest; only when every connection is in a
  request is the new one refused. A flood of idle or slow connections therefore never locks out
  a caller that is already connected, nor a new one.
Closing for any of these reasons is counted and logged at most once per interval.
"""
from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

from aiohttp import web

from ..connections import RateLimitedLog

SWEEP_S = 0.5
"""How often the timeouts are checked (a connection may outlive its timeout by this much)."""


class Connections:
    """Bookkeeping and timeouts of the connections of one port (all on the event loop)."""

    def __init__(self, name: str, cap: int, header_timeout_s: float, keepalive_timeout_s: float,
                 clock=time.monotonic):
        self.name = name
        self.cap = cap
        self.header_timeout_s = header_timeout_s
        self.keepalive_timeout_s = keepalive_timeout_s
        self.clock = clock
        self.unproven: OrderedDict["Handler", None] = OrderedDict()  # no request yet, oldest first
        self.idle: OrderedDict["Handler", None] = OrderedDict()  # between requests, idle longest first
        self.busy: set["Handler"] = set()
        self.closed_log = RateLimitedLog(f"{name}: connections closed (over {cap} open, or a request head not "
                                         f"sent within {header_timeout_s:g} s)")
        self.refused = 0
        self._sweeper: asyncio.Task | None = None

    @property
    def open(self) -> int:
        return len(self.unproven) + len(self.idle) + len(self.busy)

    def admit(self, handler: "Handler") -> bool:
        """Room for ``handler``'s new connection, closing another if needed; False: refuse it."""
        if self.open >= self.cap:
            victims = self.unproven or self.idle
            if not victims:
                self.refused += 1
                self.closed_log.event(f"refused a new connection: all {self.cap} are in a request")
                return False
            which = "the oldest connection without a request" if victims is self.unproven else "the longest idle one"
            victim = next(iter(victims))
            self._forget(victim)
            victim.force_close()
            self.closed_log.event(f"closed {which} for a new one")
        handler.since = self.clock()
        self.unproven[handler] = None
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())
        return True

    def request_started(self, handler: "Handler") -> None:
        self.unproven.pop(handler, None)
        self.idle.pop(handler, None)
        self.busy.add(handler)
        handler.head_started = None

    def request_ended(self, handler: "Handler") -> None:
        if handler in self.busy:
            self.busy.discard(handler)
            handler.since = self.clock()
            self.idle[handler] = None

    def closed(self, handler: "Handler") -> None:
        self._forget(handler)

    def _forget(self, handler: "Handler") -> None:
        self.unproven.pop(handler, None)
        self.idle.pop(handler, None)
        self.busy.discard(handler)

    def sweep(self) -> int:
        """Close the connections past their header or keep-alive timeout; returns how many."""
        now, late, slow = self.clock(), [], 0
        for handler in self.unproven:
            if now - handler.since > self.header_timeout_s:
                late.append(handler)
        slow = len(late)
        for handler in self.idle:
            if handler.head_started is not None:
                if now - handler.head_started > self.header_timeout_s:
                    late.append(handler)
                    slow += 1
            elif now - handler.since > self.keepalive_timeout_s and not handler.writing:
                late.append(handler)
        for handler in late:
            self._forget(handler)
            handler.force_close()
        for _ in range(slow):
            self.closed_log.event("closed a connection that sent no complete request head in time")
        return len(late)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            self.sweep()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


@web.middleware
async def track_connection(request: web.Request, handler):
    """Marks the request's connection busy while the request is handled (first middleware)."""
    connection = request.protocol if isinstance(request.protocol, Handler) else None
    if connection is None:
        return await handler(request)
    connection.connections.request_started(connection)
    try:
        return await handler(request)
    finally:
        connection.connections.request_ended(connection)


class Handler(web.RequestHandler):
    """aiohttp's connection handler, reporting to ``Connections`` and answering the requests its
    parser refuses (a malformed or negative Content-Length, oversized headers) in the API's JSON."""

    def __init__(self, manager: web.Server, connections: Connections, error_response, **kwargs):
        super().__init__(manager, **kwargs)
        self.connections = connections
        self.error_response = error_response
        self.since = 0.0
        self.head_started: float | None = None
        self.refused = False

    @property
    def writing(self) -> bool:
        return self.transport is not None and self.transport.get_write_buffer_size() > 0

    def connection_made(self, transport) -> None:
        if not self.connections.admit(self):
            self.refused = True
            transport.abort()
            return
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.head_started is None and self not in self.connections.busy:
            self.head_started = self.connections.clock()
        super().data_received(data)

    def connection_lost(self, exc) -> None:
        if self.refused:
            return
        self.connections.closed(self)
        super().connection_lost(exc)

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send the error")
        text = (message or (str(exc) if exc else "") or "malformed request").strip().splitlines()[0]
        if status >= 500:
            self.logger.error("HTTP request failed: %s", text, exc_info=exc)
        response = self.error_response(status, f"HTTP request: {text}")
        response.force_close()
        return response
