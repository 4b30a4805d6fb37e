"""One HTTP port: our own asyncio listener whose connections are ``Handler``s (bounded by
``Connections``), with aiohttp's public runner behind them, so that no private aiohttp class is
needed (the old code swapped a server's class at run time). Used for the API port and the metrics
port alike.
"""
from __future__ import annotations

import asyncio
import ssl

from aiohttp import web

from ..connections import quiet_accept_errors
from .connections import Connections, Handler


def parser_error(status: int, message: str) -> web.Response:
    """The JSON error of a request aiohttp's parser refused (the API's ``{"error": ...}`` shape)."""
    return web.json_response({"error": message}, status=status)


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

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None, reuse_port: bool = False) -> None:
        """Listen on ``host:port``; ``reuse_port`` shares it with the other workers of a pool (SO_REUSEPORT)."""
        await self.runner.setup()
        loop = asyncio.get_running_loop()
        quiet_accept_errors(loop)
        server, connections = self.runner.server, self.connections
        keepalive = connections.keepalive_timeout_s

        def handler() -> Handler:
            return Handler(server, connections, parser_error, loop=loop, keepalive_timeout=keepalive,
                           **HANDLER_OPTIONS)

        self._listener = await loop.create_server(
            handler, host, port, ssl=ssl_context, reuse_address=True, reuse_port=reuse_port,
            backlog=min(connections.cap, 1024),
            ssl_handshake_timeout=connections.header_timeout_s if ssl_context is not None else None)
        self.port = self._listener.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, let open requests finish (within the shutdown timeout), close the connections."""
        if self._listener is not None:
            self._listener.close()
        self.connections.close()
        await self.runner.cleanup()
