"""The metrics port: ``/metrics`` (any path, as prometheus_client's own server answers) served by
aiohttp on the event loop, behind the same bounded connections as the API port.

prometheus_client's ``start_http_server`` runs a thread per connection with no timeout: idle
connections held threads and descriptors without bound. The exposition is rendered in a thread
(it grows with the number of series), in the format and compression the scraper asks for.
"""
from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from .connections import track_connection


def metrics_app(registry: CollectorRegistry) -> web.Application:
    async def scrape(request: web.Request) -> web.Response:
        names = request.query.getall("name[]", [])
        source = registry.restricted_registry(names) if names else registry
        encoder, content_type = choose_encoder(request.headers.get("Accept"))
        body = await asyncio.to_thread(encoder, source)
        response = web.Response(body=body, headers={"Content-Type": content_type})
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            response.enable_compression()
        return response

    app = web.Application(middlewares=[track_connection])
    app.router.add_get("/{path:.*}", scrape)
    return app
