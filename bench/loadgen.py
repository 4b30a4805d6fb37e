"""The load generator: one preencoded request sent over grpc.aio channels, closed or open loop.

The request is serialized once and sent as bytes, and replies are kept as bytes (no protobuf
work per call), so the client spends its time on the transport only. Calls are spread over
several channels, each its own HTTP/2 connection (a local subchannel pool), so one connection's
stream limit and framing thread do not cap high concurrency.

Closed loop: ``concurrency`` callers each send their next request when the last one is answered.
Open loop: requests start at ``rate`` per second on a fixed schedule whatever the server does.
Latency counts from the actual send; how late sends were against the schedule is reported beside
it (asyncio's timers have about 1 ms resolution; a client that falls behind shows up there).
A scheduled request finding ``max_inflight`` calls still open is skipped (counted, not sent).
Both stop at ``duration_s`` or ``max_requests``, whichever comes first; every call has a timeout,
so a run ends at most ``duration_s + timeout_s`` after it starts.
"""
from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

import grpc

from bench.http_load import HttpCallError, HttpChannel
from bench.loadgen_stats import Recorder, Summary, percentile, summarize

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Workload:
    """What one call sends: the gRPC method path (or the HTTP path, with ``headers``) and the
    serialized request of ``images`` images."""

    method: str
    payload: bytes
    images: int
    headers: dict | None = None


@dataclass(frozen=True)
class LoadSettings:
    """How to send: closed loop (``concurrency``) or open loop (``rate``), and when to stop."""

    concurrency: int | None = 1
    rate: float | None = None
    duration_s: float = 10.0
    max_requests: int | None = None
    channels: int = 1
    timeout_s: float = 10.0
    warmup_s: float = 0.0
    max_inflight: int = 4096

    def __post_init__(self):
        if (self.concurrency is None) == (self.rate is None):
            raise ValueError("load: expected either concurrency (closed loop) or rate (open loop), "
                             f"got concurrency={self.concurrency!r}, rate={self.rate!r}")
        checks = [("concurrency", self.concurrency, self.concurrency is None or self.concurrency >= 1, "an integer >= 1"),
                  ("rate", self.rate, self.rate is None or self.rate > 0, "requests/s > 0"),
                  ("duration_s", self.duration_s, self.duration_s > 0, "seconds > 0"),
                  ("max_requests", self.max_requests, self.max_requests is None or self.max_requests >= 1,
                   "an integer >= 1"),
                  ("channels", self.channels, self.channels >= 1, "an integer >= 1"),
                  ("timeout_s", self.timeout_s, self.timeout_s > 0, "seconds > 0"),
                  ("warmup_s", self.warmup_s, self.warmup_s >= 0, "seconds >= 0"),
                  ("max_inflight", self.max_inflight, self.max_inflight >= 1, "an integer >= 1")]
        for name, value, ok, expected in checks:
            if not ok:
                raise ValueError(f"load: {name}: expected {expected}, got {value!r}")

    @property
    def mode(self) -> str:
        return "closed" if self.concurrency is not None else "open"


@dataclass
class RunResult:
    """A finished run: the summary and what the client itself cost."""

    summary: Summary
    client_cpu: float  # CPU seconds of this process over the run / elapsed seconds (1.0 = one core busy)
    settings: LoadSettings
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        s = self.settings
        return {**self.summary.to_dict(), "client_cpu": self.client_cpu, "mode": s.mode,
                "concurrency": s.concurrency, "rate": s.rate, "duration_s": s.duration_s,
                "max_requests": s.max_requests, "channels": s.channels, "timeout_s": s.timeout_s, **self.extra}


def channel_options() -> list[tuple[str, object]]:
    return [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.use_local_subchannel_pool", 1)]  # a connection of its own per channel


def code_name(exc: BaseException) -> str:
    if isinstance(exc, HttpCallError):  # by the gRPC code of its status
        return exc.code_name
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code().name
    if isinstance(exc, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED.name
    return type(exc).__name__


class LoadGenerator:
    """Sends ``workload`` to ``target`` as ``settings`` say; ``await run()`` returns the figures."""

    def __init__(self, target: str, workload: Workload, settings: LoadSettings):
        self.target = target
        self.workload = workload
        self.settings = settings
        self._channels: list[grpc.aio.Channel] = []
        self._calls: list = []

    async def run(self) -> RunResult:
        s = self.settings
        if self.workload.headers is not None:
            self._channels = [HttpChannel(self.target, self.workload.headers) for _ in range(s.channels)]
        else:
            self._channels = [grpc.aio.insecure_channel(self.target, options=channel_options())
                              for _ in range(s.channels)]
        self._calls = [c.unary_unary(self.workload.method) for c in self._channels]  # bytes in, bytes out
        try:
            try:
                await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in self._channels)), s.timeout_s)
            except TimeoutError:
                raise TimeoutError(f"{self.target}: not connected within {s.timeout_s:g} s") from None
            if s.warmup_s > 0:
                await self._phase(Recorder(), s.warmup_s, None)
            recorder = Recorder()
            cpu, start = time.process_time(), time.perf_counter()
            state = await self._phase(recorder, s.duration_s, s.max_requests)
            elapsed = (state["last"] or time.perf_counter()) - start
            cpu = time.process_time() - cpu
        finally:
            await asyncio.gather(*(c.close() for c in self._channels))
        elapsed = max(elapsed, 1e-9)
        summary = summarize(recorder.latencies, recorder.codes, elapsed, self.workload.images, state["sent"])
        extra = {"skipped": state["skipped"]}
        if s.mode == "open":
            late = state["late"]
            extra["send_late_ms"] = {"p50": percentile(late, 50) * 1e3, "p99": percentile(late, 99) * 1e3,
                                     "max": max(late) * 1e3 if late else math.nan}
        return RunResult(summary, cpu / elapsed, s, extra)

    async def _phase(self, recorder: Recorder, seconds: float, max_requests: int | None) -> dict:
        """Send for ``seconds`` (or ``max_requests`` calls) and wait for every answer.

        Returns the calls ``sent``, the open loop's ``skipped`` ones and the ``last`` answer's time.
        """
        s = self.settings
        budget = math.inf if max_requests is None else max_requests
        end = time.perf_counter() + seconds
        state = {"sent": 0, "skipped": 0, "last": 0.0}
        if s.mode == "closed":
            coroutine = self._closed(recorder, state, end, budget)
        else:
            coroutine = self._open(recorder, state, end, budget)
        task = asyncio.ensure_future(coroutine)
        try:  # every call carries timeout_s; the margin only guards against a stuck transport
            await asyncio.wait_for(asyncio.shield(task), seconds + s.timeout_s + 5)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return state

    async def _call(self, i: int, recorder: Recorder, state: dict, start: float) -> None:
        try:
            await self._calls[i % len(self._calls)](self.workload.payload, timeout=self.settings.timeout_s)
            code = "OK"
        except (grpc.aio.AioRpcError, asyncio.CancelledError, HttpCallError) as exc:
            code = code_name(exc)
            if isinstance(exc, asyncio.CancelledError):
                recorder.record(code, 0.0)
                raise
        done = time.perf_counter()
        state["last"] = done
        recorder.record(code, done - start)

    async def _closed(self, recorder: Recorder, state: dict, end: float, budget: float) -> None:
        async def caller(i: int) -> None:
            while time.perf_counter() < end and state["sent"] < budget:
                state["sent"] += 1
                await self._call(i, recorder, state, time.perf_counter())

        await asyncio.gather(*(caller(i) for i in range(self.settings.concurrency)))

    async def _open(self, recorder: Recorder, state: dict, end: float, budget: float) -> None:
        interval = 1.0 / self.settings.rate
        first = time.perf_counter()
        inflight: set[asyncio.Task] = set()
        lateness = state["late"] = []
        n = 0
        while state["sent"] + state["skipped"] < budget:
            due = first + n * interval
            if due >= end:
                break
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            n += 1
            if len(inflight) >= self.settings.max_inflight:
                state["skipped"] += 1
                continue
            state["sent"] += 1
            start = time.perf_counter()
            lateness.append(start - due)
            task = asyncio.ensure_future(self._call(n, recorder, state, start))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
        if inflight:
            await asyncio.gather(*inflight, return_exceptions=True)
