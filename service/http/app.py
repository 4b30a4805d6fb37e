"""The HTTP server: an aiohttp application on the server's own event loop, its guard and its life.

aiohttp is the transport because it is a maintained asyncio HTTP/1.1 server (and client) that runs
on an existing loop: the REST handlers await the same batch queues as the grpc.aio handlers, with
no second loop, thread or process in between (an ASGI server such as uvicorn wants to own the
loop and adds a framework layer). Every answer but the page and samples is JSON; failures are
``{"error": message}`` with the status of ``status.HTTP_STATUS``, including the HTTP parser's
own refusals (a malformed or negative Content-Length, oversized headers), which aiohttp would
otherwise answer in plain text (service.http.connections.Handler). The port is our own asyncio
listener making those handlers, with aiohttp's public runner behind them, so that its connections
are bounded (service.http.connections) without any private aiohttp class.
"""
from __future__ import annotations

import asyncio
import logging
import ssl

from aiohttp import web

from ..admission import HEALTH_CHECK, INFERENCE, TOKEN_GUARDED, Admission, Call, Refusal
from ..connections import quiet_accept_errors
from .access import EXEMPT_PATHS
from .connections import Connections, Handler, track_connection
from .routes import error_response
from .status import HTTP_STATUS, http_error

log = logging.getLogger(__name__)


def call_of(request: web.Request) -> Call:
    """The request as the admission sees it: infer is an inference call (the drain gate), health and
    the page need no token (as gRPC health), everything else is token-guarded."""
    if request.method == "POST" and request.path.endswith("/infer"):
        kind = INFERENCE
    else:
        kind = HEALTH_CHECK if request.path in EXEMPT_PATHS else TOKEN_GUARDED
    return Call(kind, request.path, tuple(request.headers.getall("Authorization", ())))


@web.middleware
async def guard(request: web.Request, handler):
    """The admission (service.admission), then the handler; a refusal or any failure becomes the JSON
    error of its status."""
    ticket = None
    try:
        ticket = request.app["admission"].admit(call_of(request))
        return await handler(request)
    except Refusal as refusal:
        return error_response(HTTP_STATUS[refusal.code], refusal.message)
    except web.HTTPException as exc:  # the router's own: no such path (404), method (405)
        if exc.status < 400:
            raise
        return error_response(exc.status, f"{request.method} {request.path[:200]}: {exc.reason}")
    except Exception as exc:
        status, _, message = http_error(exc)
        return error_response(status, message)
    finally:
        if ticket is not None:
            ticket.release()


def make_app(routes, admission: Admission, max_body: int, extra=()) -> web.Application:
    """The application: the connection tracking, the guard (``admission``: the token, the drain gate
    and the call limits every transport shares), the v2 routes and ``extra`` route adders (the page,
    status)."""
    app = web.Application(middlewares=[track_connection, guard], client_max_size=max_body)
    app["admission"] = admission
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
