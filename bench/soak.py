"""Soak under overload: open-loop load at ~2x the measured capacity, then normal load, then recovery.

    python -m bench.soak                          # 30 s at 2x, writes the figures into docs/RELIABILITY.md
    python -m bench.soak --overload-s 10 --no-write

Starts its own server (``python -m service serve`` on free loopback ports), then:

1. capacity: closed loop, ``--concurrency`` callers, requests of ``--images`` images, for ``--measure-s``;
2. overload: open loop at ``--factor`` x capacity for ``--overload-s`` (a fixed send schedule,
   whatever the server does), sampling the server's resident memory (VmRSS) and queue depth every 0.25 s;
3. normal: open loop at ``--normal-factor`` x the throughput served (the lower of capacity and what
   the overload phase got through), with at most ``--normal-outstanding`` requests unanswered at a time
   when given (so that a slow moment cannot fill the queue);
4. recovery: the closed loop of step 1 again, repeated (up to ``--recovery-tries`` windows) until it
   serves ``--recovery-ratio`` x capacity.

Every request carries a distinct request_id and a deadline (``--timeout-s``); a request counts as
answered once, by its reply (whose request_id must be its own) or by its status code. "lost" is
sent minus answered (must be 0), "misrouted" a reply carrying another request's id (must be 0).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from bench import ROOT, scrape
from bench.launcher import launch_server, wait_until_async
from bench.loadgen_stats import percentile
from bench.report import cpu_name, write_doc
from service.generated.convnet.v1 import convnet_pb2 as pb
from service.generated.convnet.v1 import convnet_pb2_grpc


DOC = ROOT / "docs" / "RELIABILITY.md"
BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"


def rss_mib(pid: int) -> float:
    """Resident memory of a process (VmRSS), MiB."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) / 1024


@dataclass
class Phase:
    """What one phase measured."""

    name: str
    seconds: float
    sent: int = 0
    codes: Counter = field(default_factory=Counter)
    latencies: list = field(default_factory=list)
    refusal_latencies: list = field(default_factory=list)
    examples: dict = field(default_factory=dict)
    misrouted: int = 0
    scheduled_rate: float = 0.0

    @property
    def answered(self) -> int:
        return sum(self.codes.values())

    @property
    def lost(self) -> int:
        return self.sent - self.answered

    @property
    def ok_per_s(self) -> float:
        return self.codes["OK"] / self.seconds

    def percentile(self, p: float, refusals: bool = False) -> float:
        """Latency (ms) of OK requests (or of refusals: RESOURCE_EXHAUSTED, CANCELLED), nearest rank."""
        return percentile(self.refusal_latencies if refusals else self.latencies, p) * 1e3


class Client:
    """Sends numbered requests of ``images`` images over several channels and records the answers."""

    def __init__(self, target: str, model: str, images: int, channels: int = 8, timeout_s: float = 10.0):
        x = np.random.default_rng(0).standard_normal((images, 3, 32, 32)).astype("<f4")
        self.tensor = pb.Tensor(shape=x.shape, data=x.tobytes())
        self.model = model
        self.timeout_s = timeout_s
        self.channels = [grpc.aio.insecure_channel(target) for _ in range(channels)]
        self.stubs = [convnet_pb2_grpc.ClassifierStub(c) for c in self.channels]
        self._next = 0
        self.outstanding = 0
        self.peak_outstanding = 0

    async def ready(self) -> None:
        await asyncio.gather(*(c.channel_ready() for c in self.channels))

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.channels))

    async def call(self, phase: Phase) -> None:
        self._next += 1
        rid = str(self._next)
        stub = self.stubs[self._next % len(self.stubs)]
        phase.sent += 1
        self.outstanding += 1
        self.peak_outstanding = max(self.peak_outstanding, self.outstanding)
        start = time.perf_counter()
        try:
            reply = await stub.Classify(pb.ClassifyRequest(model=self.model, tensor=self.tensor, request_id=rid),
                                        timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            self.outstanding -= 1
            phase.codes[exc.code().name] += 1
            phase.examples.setdefault(exc.code().name, exc.details())
            if exc.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED):
                phase.refusal_latencies.append(time.perf_counter() - start)
            return
        self.outstanding -= 1
        phase.codes["OK"] += 1
        phase.latencies.append(time.perf_counter() - start)
        if reply.request_id != rid:
            phase.misrouted += 1

    async def closed_loop(self, name: str, concurrency: int, seconds: float) -> Phase:
        phase = Phase(name, seconds)
        end = time.perf_counter() + seconds

        async def caller():
            while time.perf_counter() < end:
                await self.call(phase)

        start = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        phase.seconds = time.perf_counter() - start
        return phase

    async def open_loop(self, name: str, rate: float, seconds: float, max_outstanding: int | None = None) -> Phase:
        """Start a request every 1/rate s on a fixed schedule; wait for every answer. With
        ``max_outstanding``, a request waits for a free slot first (the schedule slips rather than
        more than that many requests being unanswered at once)."""
        phase = Phase(name, seconds, scheduled_rate=rate)
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(max_outstanding) if max_outstanding else None
        start = loop.time()
        calls = set()
        n = 0

        async def bounded_call():
            try:
                await self.call(phase)
            finally:
                slots.release()

        while (due := start + n / rate) < start + seconds:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if slots:
                await slots.acquire()
            task = asyncio.ensure_future(bounded_call() if slots else self.call(phase))
            calls.add(task)
            task.add_done_callback(calls.discard)
            n += 1
        if calls:
            await asyncio.gather(*list(calls))
        return phase


def queue_drained(metrics_port: int, model: str) -> bool:
    """Whether the server holds no request of ``model``: none queued, none in flight."""
    text = scrape.scrape(metrics_port)
    return (scrape.metric(text, "convnet_queue_depth", model=model) == 0
            and scrape.metric(text, "convnet_inflight_requests", model=model) == 0)


def queue_depth(metrics_port: int, model: str) -> float:
    """Images waiting in ``model``'s batch queue, as the server's /metrics report them."""
    return scrape.metric(scrape.scrape(metrics_port), "convnet_queue_depth", model=model)


async def soak(target: str, pid: int, metrics_port: int, model: str = "cifar-vgg", images: int = 8,
               concurrency: int = 32, measure_s: float = 5.0, factor: float = 2.0, overload_s: float = 30.0,
               normal_factor: float = 0.5, normal_s: float = 10.0, timeout_s: float = 10.0,
               normal_outstanding: int | None = None, recovery_ratio: float = 0.0, recovery_tries: int = 1) -> dict:
    """Run the four phases against a running server; returns the figures. Each phase after the
    overload starts once the server's /metrics show its queue and in-flight requests back at 0
    (a client gives up on a request at its deadline before the server has withdrawn it).
    ``phases`` ends with every recovery window run; ``warm_up`` is kept so that the client's
    counts can be set against the server's."""
    async def drained() -> None:
        await wait_until_async(lambda: queue_drained(metrics_port, model), f"{model}: queue and in-flight at 0", 60)

    client = Client(target, model, images, timeout_s=timeout_s)
    await client.ready()
    warm_up = await client.closed_loop("warm-up", concurrency, 1.0)
    capacity = await client.closed_loop("capacity", concurrency, measure_s)
    rate = factor * capacity.ok_per_s
    rss_before = rss_mib(pid)
    samples: list[float] = []
    depths: list[float] = []

    async def sample():
        while True:
            samples.append(rss_mib(pid))
            depths.append(await asyncio.to_thread(queue_depth, metrics_port, model))
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample())
    client.peak_outstanding = 0
    overload = await client.open_loop("overload", rate, overload_s)
    overload_outstanding = client.peak_outstanding
    await drained()
    served = min(capacity.ok_per_s, overload.ok_per_s)
    normal = await client.open_loop("normal", normal_factor * served, normal_s, normal_outstanding)
    sampler.cancel()
    await drained()
    recoveries = []
    while len(recoveries) < max(1, recovery_tries):
        label = "recovery" if not recoveries else f"recovery {len(recoveries) + 1}"
        recoveries.append(await client.closed_loop(label, concurrency, measure_s))
        if recoveries[-1].ok_per_s >= recovery_ratio * capacity.ok_per_s:
            break
    rss_after = rss_mib(pid)
    await client.close()
    return {"model": model, "images": images, "concurrency": concurrency, "factor": factor,
            "phases": [capacity, overload, normal, *recoveries], "warm_up": warm_up,
            "rss_before_mib": rss_before, "rss_peak_mib": max(samples + [rss_after]), "rss_after_mib": rss_after,
            "queue_peak_images": max(depths, default=0.0), "overload_peak_outstanding": overload_outstanding,
            "request_mib": client.tensor.ByteSize() / 2**20}


def table(figures: dict) -> str:
    rows = ["| phase | load | seconds | sent | OK | RESOURCE_EXHAUSTED | other codes | lost | misrouted "
            "| OK req/s | p50 ms | p99 ms | max ms | refused p99 ms |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for p in figures["phases"]:
        load = f"open loop {p.scheduled_rate:.0f} req/s" if p.scheduled_rate else f"closed loop c={figures['concurrency']}"
        other = ", ".join(f"{k} {v}" for k, v in sorted(p.codes.items()) if k not in ("OK", "RESOURCE_EXHAUSTED")) or "0"
        rows.append(f"| {p.name} | {load} | {p.seconds:.1f} | {p.sent} | {p.codes['OK']} | {p.codes['RESOURCE_EXHAUSTED']} "
                    f"| {other} | {p.lost} | {p.misrouted} | {p.ok_per_s:.0f} | {p.percentile(50):.1f} "
                    f"| {p.percentile(99):.1f} | {p.percentile(100):.1f} | {p.percentile(99, refusals=True):.1f} |")
    return "\n".join(rows)


def report(figures: dict, command: str, server_args: list[str]) -> str:
    capacity, overload, normal, *recoveries = figures["phases"]
    recovery = recoveries[-1]
    return "\n".join([
        f"Command: `{command}` (server: `python -m service serve {' '.join(server_args)}`, defaults otherwise); "
        f"machine: {os.cpu_count()} cores, {cpu_name()}, Python {platform.python_version()}, "
        + ("server pinned to one core, this client to the other(s). " if server_args_pinned(command)
           else "client and server on the same machine, sharing its cores. ")
        + f"Requests of {figures['images']} `{figures['model']}` images; capacity measured closed loop "
        f"(c={figures['concurrency']}) as {capacity.ok_per_s:.0f} requests/s, overload sent at {figures['factor']:g}x that.",
        "",
        table(figures),
        "",
        f"- Server resident memory (VmRSS): {figures['rss_before_mib']:.0f} MiB before the overload, "
        f"peak {figures['rss_peak_mib']:.0f} MiB (+{figures['rss_peak_mib'] - figures['rss_before_mib']:.0f} MiB), "
        f"{figures['rss_after_mib']:.0f} MiB after recovery; queue depth at most "
        f"{figures['queue_peak_images']:.0f} images (sampled every 0.25 s); at most "
        f"{figures['overload_peak_outstanding']} requests of {figures['request_mib']:.2f} MiB unanswered at once.",
        f"- Requests lost (sent, never answered): {sum(p.lost for p in figures['phases'])}; replies with another "
        f"request's id: {sum(p.misrouted for p in figures['phases'])}.",
        f"- Accepted requests under overload: p99 {overload.percentile(99):.0f} ms, max {overload.percentile(100):.0f} ms; "
        f"{overload.codes['RESOURCE_EXHAUSTED'] / max(overload.sent, 1):.0%} shed with RESOURCE_EXHAUSTED"
        f"{' and ' + format(overload.codes['CANCELLED'] / overload.sent, '.0%') + ' with CANCELLED' if overload.codes['CANCELLED'] else ''}"
        f", answered in {overload.percentile(50, True):.1f} ms (p50) / {overload.percentile(99, True):.1f} ms (p99).",
        *[f"- {name} (overload), for example: `{example}`" for name, example in sorted(overload.examples.items())],
        f"- Recovery: {recovery.ok_per_s:.0f} requests/s after the overload vs {capacity.ok_per_s:.0f} before "
        f"({recovery.ok_per_s / capacity.ok_per_s:.0%}"
        f"{f', window {len(recoveries)} of {len(recoveries)}' if len(recoveries) > 1 else ''}).",
    ])


def server_args_pinned(command: str) -> bool:
    return "--pin" in command.split()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=ROOT / "models")
    p.add_argument("--model", default="cifar-vgg")
    p.add_argument("--images", type=int, default=8, help="images per request")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--measure-s", type=float, default=5.0)
    p.add_argument("--factor", type=float, default=2.0)
    p.add_argument("--overload-s", type=float, default=30.0)
    p.add_argument("--normal-factor", type=float, default=0.5)
    p.add_argument("--normal-s", type=float, default=10.0)
    p.add_argument("--normal-outstanding", type=int, default=None,
                   help="at most this many requests unanswered in the normal phase (default: no bound)")
    p.add_argument("--recovery-ratio", type=float, default=0.0, help="repeat the recovery window until this x capacity")
    p.add_argument("--recovery-tries", type=int, default=1, help="recovery windows at most")
    p.add_argument("--server-arg", action="append", default=[], help="extra flag for the server (repeatable)")
    p.add_argument("--pin", action="store_true",
                   help="server on the last core, this client on the others (needs 2+ cores)")
    p.add_argument("--section", default="soak", help="the docs/RELIABILITY.md section (markers <!-- NAME:begin/end -->)")
    p.add_argument("--no-write", action="store_true", help="print only; do not update docs/RELIABILITY.md")
    args = p.parse_args(argv)
    cores = sorted(os.sched_getaffinity(0))
    server_cpus = frozenset({cores[-1]}) if args.pin and len(cores) > 1 else None
    if server_cpus:
        os.sched_setaffinity(0, set(cores[:-1]))
    with tempfile.TemporaryDirectory() as tmp:
        server = launch_server(Path(tmp), *args.server_arg, models=args.models, cores=server_cpus, timeout=120)
        try:
            figures = asyncio.run(soak(server.target, server.pid, server.metrics_port, args.model, args.images,
                                       args.concurrency, args.measure_s, args.factor, args.overload_s,
                                       args.normal_factor, args.normal_s,
                                       normal_outstanding=args.normal_outstanding,
                                       recovery_ratio=args.recovery_ratio, recovery_tries=args.recovery_tries))
        finally:
            server.stop()
    command = "python -m bench.soak " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report(figures, command.strip(), args.server_arg)
    print(text)
    if not args.no_write:
        write_doc(text, DOC, f"<!-- {args.section}:begin -->", f"<!-- {args.section}:end -->")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
