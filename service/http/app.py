"""The HTTP server: an aiohttp application on the server's own event loop, its guard and its life.

aiohttp is the transport because it is a maintained asyncio HTTP/1.1 server (and client) that runs
on an existing loop: the REST handlers await the same batch queues as the grpc.aio handlers, with
no second loop, thread or process in between (an ASGI server such as uvicorn wants to own the
loop and adds a framework layer). Every answer but the page and samples is JSON; failures are
``{"error": message}`` with the status of ``status.HTTP_STATUS``, including the HTTP parser's
own refusals (a malformed or negative Content-Length, oversized headers), which aiohttp would
otherwise answer in plain text.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
import time

import grpc
from aiohttp import web

from ..drain import SHUTTING_DOWN, Drain
from ..errors import ShuttingDown
from ..limits import CHECKS, GUARDED, CallLimits
from ..connections import quiet_accept_errors
from .access import EXEMPT_PATHS, BearerToken
from .connections import Connections, Handler, track_connection
from .routes import error_response
from .status import HttpError, http_error

log = logging.getLogger(__name__)


@web.middleware
async def guard(request: web.Request, handler):
    """Access first, then a slot of the call limits, then the handler; any failure becomes the JSON
    error of its status."""
    pool = entered = None
    try:
        token: BearerToken | None = request.app["token"]
        if token is not None:
            token.check(request.path, request.headers.get("Authorization"))
        drain: Drain | None = request.app["drain"]
        if drain is not None and request.method == "POST" and request.path.endswith("/infer"):  # as gRPC's gated calls
            drain.last_call = time.monotonic()
            if drain.refusing:
                raise ShuttingDown(SHUTTING_DOWN)
            drain.enter()
            entered = drain
        limits: CallLimits | None = request.app["limits"]
        if limits is not None:  # the gRPC port's pools: health and the page apart from the guarded calls
            pool = limits.pools[CHECKS if request.path in EXEMPT_PATHS else GUARDED]
            if not pool.enter():
                refused, pool = pool, None
                raise HttpError(429, grpc.StatusCode.RESOURCE_EXHAUSTED, refused.refusal())
        return await handler(request)
    except web.HTTPException as exc:  # the router's own: no such path (404), method (405)
        if exc.status < 400:
            raise
        return error_response(exc.status, f"{request.method} {request.path[:200]}: {exc.reason}")
    except Exception as exc:
        status, _, message = http_error(exc)
        return error_response(status, message)
    finally:
        if pool is not None:
            pool.leave()
        if entered is not None:
            entered.leave()


def make_app(routes, token: str | None, max_body: int, extra=(), limits: CallLimits | None = None,
             drain: Drain | None = None) -> web.Application:
    """The application: the guard, the v2 routes and ``extra`` route adders (the page, status);
    ``limits``, the gRPC port's per-class call limits, shared (max_concurrent_rpcs); ``drain``, the
    server's shutdown phases: infer requests count as calls in flight and are refused from CLOSING on."""
    app = web.Application(middlewares=[track_connection, guard], client_max_size=max_body)
    app["token"] = BearerToken(token) if token else None
    app["limits"] = limits
    app["drain"] = drain
    routes.add_to(app)
    for add in extra:
        add(app)
    return app


HANDLER_OPTIONS = {"max_field_size": 16384, "auto_decompress": False, "access_log": None}
"""aiohttp's per-connection options: long headers (tokens) allowed; bodies decompressed by
service.http.body against the limit, not by aiohttp; no access log."""


class HttpServer:
    """The aiohttp runner and its one listener, whose connections are ``Handler``s bounded by
    ``connections``; ``port`` is the port bound (0 asks for a free one)."""

    def __init__(self, app: web.Application, shutdown_timeout: float, connections: Connections):
        self.runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=shutdown_timeout)
        self.connections = connections
        self.port = 0
        self._listener: asyncio.Server | None = None

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
        await self.runner.setup()
        loop = asyncio.get_running_loop()
        quiet_accept_errors(loop)
        server, connections = self.runner.server, self.connections
        keepalive = connections.keepalive_timeout_s

        def handler() -> Handler:
            return Handler(server, connections, error_response, loop=loop, keepalive_timeout=keepalive,
                           **HANDLER_OPTIONS)

        self._listener = await loop.create_server(
            handler, host, port, ssl=ssl_context, reuse_address=True, reuse_port=False,
            backlog=min(connections.cap, 1024),
            ssl_handshake_timeout=connections.header_timeout_s if ssl_context is not None else None)
        self.port = self._listener.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, let open requests finish (within the shutdown timeout), close the connections."""
        if self._listener is not None:
            self._listener.close()
        self.connections.close()
        await self.runner.cleanup()
