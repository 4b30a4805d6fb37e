"""What service.http relies on in aiohttp, checked so that an aiohttp release that moves it fails
here rather than in production: the public ``web.RequestHandler`` is subclassed (its asyncio
protocol callbacks and ``handle_error``), made by our own listener (service.http.port) with ``runner.server`` as its
manager and keyword options we choose, and reached from a request as ``request.protocol``. No
private name of aiohttp is used (the old code swapped a private server class at run time)."""
from __future__ import annotations

import asyncio
import inspect
import json

from aiohttp import web

from service.http.port import HANDLER_OPTIONS, HttpServer
from service.http.connections import Connections, Handler, track_connection


def test_the_request_handler_hooks_and_options_we_use_exist():
    assert issubclass(Handler, web.RequestHandler) and "RequestHandler" in web.__all__
    init = inspect.signature(web.RequestHandler.__init__).parameters
    assert {"manager", "loop", "keepalive_timeout", *HANDLER_OPTIONS} <= set(init)
    assert list(inspect.signature(web.RequestHandler.handle_error).parameters) == ["self", "request", "status",
                                                                                 "exc", "message"]
    for hook in ("connection_made", "data_received", "connection_lost", "force_close"):
        assert callable(getattr(web.RequestHandler, hook)), hook
    assert isinstance(inspect.getattr_static(web.AppRunner, "server"), property)


def test_a_live_port_answers_parser_errors_in_json_and_tracks_its_connections():
    async def main():
        async def hello(request: web.Request) -> web.Response:
            return web.json_response({"protocol": type(request.protocol).__name__,
                                      "busy": len(request.protocol.connections.busy)})

        app = web.Application(middlewares=[track_connection])
        app.router.add_get("/", hello)
        connections = Connections("test port", 8, header_timeout_s=5, keepalive_timeout_s=5)
        server = HttpServer(app, 1.0, connections)
        await server.start("127.0.0.1", 0, None)
        try:
            replies = []
            for raw in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"):
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(raw)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                replies.append((head.split(b" ")[1], json.loads(await reader.readexactly(length))))
                writer.close()
            return replies
        finally:
            await server.stop()

    (ok_status, ok), (bad_status, bad) = asyncio.run(main())
    assert ok_status == b"200" and ok == {"protocol": "Handler", "busy": 1}
    assert bad_status == b"400" and bad["error"].startswith("HTTP request: ")
