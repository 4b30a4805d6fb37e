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

import json
import logging
import ssl
import time

import grpc
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from ..drain import SHUTTING_DOWN, Drain
from ..errors import ShuttingDown
from ..limits import CHECKS, GUARDED, CallLimits
from .access import EXEMPT_PATHS, BearerToken
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


class _JsonErrorHandler(RequestHandler):
    """aiohttp's connection handler, answering requests its parser refuses in the API's JSON."""

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            log.error("HTTP request failed", exc_info=exc)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send the error")
        text = (message or (str(exc) if exc else "") or "malformed request").strip().splitlines()[0]
        response = web.Response(status=status, content_type="application/json",
                                text=json.dumps({"error": f"HTTP request: {text}"}))
        response.force_close()
        return response


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class _Runner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorServer
        return server


def make_app(routes, token: str | None, max_body: int, extra=(), limits: CallLimits | None = None,
             drain: Drain | None = None) -> web.Application:
    """The application: the guard, the v2 routes and ``extra`` route adders (the page, status);
    ``limits``, the gRPC port's per-class call limits, shared (max_concurrent_rpcs); ``drain``, the
    server's shutdown phases: infer requests count as calls in flight and are refused from CLOSING on."""
    app = web.Application(middlewares=[guard], client_max_size=max_body, handler_args={"max_field_size": 16384})
    app["token"] = BearerToken(token) if token else None
    app["limits"] = limits
    app["drain"] = drain
    routes.add_to(app)
    for add in extra:
        add(app)
    return app


class HttpServer:
    """The aiohttp runner and its one TCP site; ``port`` is the port bound (0 asks for a free one)."""

    def __init__(self, app: web.Application, shutdown_timeout: float):
        self.runner = _Runner(app, access_log=None, handler_cancellation=True, shutdown_timeout=shutdown_timeout)
        self.port = 0

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None, reuse_port: bool = False) -> None:
        """Listen on ``host:port``; ``reuse_port`` shares it with the other workers of a pool (SO_REUSEPORT)."""
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port, ssl_context=ssl_context, reuse_address=True, reuse_port=reuse_port)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop listening, let open requests finish (within the shutdown timeout), close the connections."""
        await self.runner.cleanup()
