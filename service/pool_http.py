"""The parent's metrics port in a pool of workers: ``/metrics``, ``/health/live``, ``/health/ready``.

``/metrics`` is one page for the pool: the parent reads every serving worker's own /metrics (on
the port of its ready file) every ``SCRAPE_S`` seconds and on each scrape, and sums them
(service.pool_metrics), with the pool's own ``convnet_pool_*`` families. ``/health/ready`` is the
parent's view of all workers: 200 while at least one serves and the pool is not stopping, else
503, with every worker's state as JSON; ``/health/live`` is 200 while the parent runs.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .pool_metrics import SCRAPE_S, PoolMetrics, render


class PoolView(Protocol):
    """What the endpoints read of the supervisor (service.workers.Pool), without importing it:
    the workers (each with ``pid``, ``state``, ``metrics_port``, ``describe()``) and whether it stops."""

    workers: list[Any]
    stopping: bool


log = logging.getLogger(__name__)

STATES = ("starting", "serving", "restarting", "exited")
LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
"""Where the parent reaches a worker's metrics when the pool listens on every address."""


class PoolEndpoints:
    """The HTTP face of ``pool``: ``await start(host, port)`` (OSError if the port is taken), ``await stop()``."""

    def __init__(self, pool: PoolView):
        self.pool = pool
        self.metrics = PoolMetrics()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._scraper: asyncio.Task | None = None
        self._host = "127.0.0.1"

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` and start reading the workers; returns the port."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health/live", self._live)
        app.router.add_get("/health/ready", self._ready)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, reuse_address=True).start()
        worker_host = LOOPBACK.get(host, host)
        self._host = f"[{worker_host}]" if ":" in worker_host else worker_host
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        self._scraper = asyncio.create_task(self._scrape_forever())
        return self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._scraper is not None:
            self._scraper.cancel()
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def exited(self, pid: int) -> None:
        """A worker process is gone: its counts stay in the totals."""
        self.metrics.exited(pid)

    def health(self) -> dict:
        workers = self.pool.workers
        serving = sum(w.state == "serving" for w in workers)
        return {"ready": serving > 0 and not self.pool.stopping, "stopping": self.pool.stopping, "serving": serving,
                "workers": [w.describe() for w in workers]}

    async def _ready(self, request: web.Request) -> web.Response:
        health = self.health()
        return web.json_response(health, status=200 if health["ready"] else 503)

    async def _live(self, request: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def _metrics(self, request: web.Request) -> web.Response:
        await self.scrape()
        live = [w.pid for w in self.pool.workers if w.state == "serving"]
        body = render([*self.metrics.families(live), *self._pool_families()])
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def _pool_families(self) -> list:
        workers = self.pool.workers
        states = GaugeMetricFamily("convnet_pool_workers", "Workers of the pool, by state.", labels=["state"])
        for state in STATES:
            states.add_metric([state], sum(w.state == state for w in workers))
        restarts = CounterMetricFamily("convnet_pool_worker_restarts", "Workers started again after they exited.",
                                       labels=["worker"])
        for worker in workers:
            restarts.add_metric([str(worker.index)], worker.restarts)
        return [states, restarts]

    async def scrape(self) -> None:
        """Read every serving worker's own /metrics (one that does not answer keeps its last)."""
        serving = [(w, w.pid, w.metrics_port) for w in self.pool.workers if w.state == "serving"]
        await asyncio.gather(*(self._scrape_one(*entry) for entry in serving))

    async def _scrape_one(self, worker: Any, pid: int, port: int) -> None:
        try:
            async with self._session.get(f"http://{self._host}:{port}/metrics") as reply:
                text = await reply.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.debug("worker %d: /metrics not read: %s", worker.index, exc)
            return
        if worker.pid == pid and worker.state == "serving":  # not a process that exited meanwhile
            try:
                self.metrics.scraped(pid, text)
            except ValueError as exc:  # a page cut short: the last one stands
                log.warning("worker %d: /metrics not understood: %s", worker.index, exc)

    async def _scrape_forever(self) -> None:
        while True:
            started = time.monotonic()
            await self.scrape()
            await asyncio.sleep(max(0.0, SCRAPE_S - (time.monotonic() - started)))
