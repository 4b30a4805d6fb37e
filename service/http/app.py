"""The HTTP server: an aiohttp application on the server's own event loop, its guard and its life.

aiohttp is the transport because it is a maintained asyncio HTTP/1.1 server (and client) that runs
on an existing loop: the REST handlers await the same batch queues that gRPC's handler threads
block on, with no second loop, thread or process in between (an ASGI server such as uvicorn wants to own the
loop and adds a framework layer). Every answer but the page and samples is JSON; failures are
``{"error": message}`` with the status of ``status.HTTP_STATUS``, including the HTTP parser's
own refusals (a malformed or negative Content-Length, oversized headers), which aiohttp would
otherwise answer in plain text (service.http.connections.Handler); service.http.port runs it.
"""
from __future__ import annotations

import logging

from aiohttp import web

from ..admission import HEALTH_CHECK, INFERENCE, TOKEN_GUARDED, Admission, Call, Refusal
from .access import EXEMPT_PATHS
from .connections import track_connection
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
