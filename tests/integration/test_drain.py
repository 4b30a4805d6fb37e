"""SIGTERM with calls in flight over both APIs loses nothing (issue 15 item 2).

Every call that reached the server before the signal is answered OK with its scores; calls that
arrive during the drain period are served; later ones get UNAVAILABLE; nobody gets CANCELLED or
UNKNOWN, and the process exits 0 within the grace period. The KServe calls go through
tritonclient's asyncio client, the own API through its generated stubs. Tests wait on the
server's metrics, health and log, never on sleeps.
"""
from __future__ import annotations

import asyncio
import collections
import signal
import time

import grpc
import numpy as np
import pytest
import tritonclient.grpc.aio as triton
from bench.launcher import wait_until_async
from tritonclient.utils import InferenceServerException
from test_server_helpers import assert_scores, images, marked, reply_scores, tensor

from service.generated.convnet.v1 import convnet_pb2 as pb
from service.generated.convnet.v1 import convnet_pb2_grpc

MODEL = "cifar-tiny"
SLOW = 777.0
SIZES = (1, 8)
PER_KIND = 64  # x 2 sizes x 2 APIs = 256 calls


def slow_env(seconds: float, drain_s: float) -> dict[str, str]:
    return {"CONVNET_INJECT_SLOW": f"{SLOW}:{seconds}", "CONVNET_DRAIN_S": str(drain_s)}


class Calls:
    """256 calls over both APIs (1 and 8 images), each result recorded as a status code name."""

    def __init__(self, server):
        self.server = server
        self.inputs: list[tuple[str, np.ndarray]] = []
        self.results: list[tuple[str, object]] = []

    async def open(self, channels: int = 8):
        self.channels = [grpc.aio.insecure_channel(self.server.target) for _ in range(channels)]
        await asyncio.gather(*(c.channel_ready() for c in self.channels))
        self.stubs = [convnet_pb2_grpc.ClassifierStub(c) for c in self.channels]
        self.triton = [triton.InferenceServerClient(self.server.target) for _ in range(channels)]

    async def close(self):
        await asyncio.gather(*(c.close() for c in self.channels), *(t.close() for t in self.triton))

    async def classify(self, i: int, x: np.ndarray):
        try:
            reply = await self.stubs[i % len(self.stubs)].Classify(
                pb.ClassifyRequest(model=MODEL, tensor=tensor(x)), timeout=60)
            return "OK", reply_scores(reply)
        except grpc.aio.AioRpcError as exc:
            return exc.code().name, exc.details()

    async def infer(self, i: int, x: np.ndarray):
        tensor_in = triton.InferInput("input", list(x.shape), "FP32")
        tensor_in.set_data_from_numpy(x)
        try:
            result = await self.triton[i % len(self.triton)].infer(MODEL, [tensor_in], client_timeout=60)
            return "OK", result.as_numpy("scores")
        except InferenceServerException as exc:
            return str(exc.status()).removeprefix("StatusCode."), exc.message()

    def start(self, seed: int = 0) -> list[asyncio.Future]:
        futures = []
        for api, call in (("classify", self.classify), ("kserve", self.infer)):
            for n in SIZES:
                for k in range(PER_KIND):
                    x = images(n, seed=seed + len(self.inputs))
                    self.inputs.append((api, x))
                    futures.append(asyncio.ensure_future(call(len(futures), x)))
        return futures

    def counts(self, results) -> collections.Counter:
        return collections.Counter(code for code, _ in results)


def check_answers(results, inputs, reference, allowed=("OK",)) -> collections.Counter:
    """Every call answered with one of ``allowed``; every OK carries the reference scores."""
    counts = collections.Counter(code for code, _ in results)
    assert set(counts) <= set(allowed), counts
    for (code, value), (_, x) in zip(results, inputs):
        if code == "OK":
            assert_scores(value, reference(MODEL, x))
        else:
            assert "shutting down" in value, value
    return counts


async def blocked(calls: Calls, server) -> asyncio.Future:
    """One call whose batch computes slowly, so that what follows queues behind it."""
    blocker = asyncio.ensure_future(calls.classify(0, marked(1, SLOW, 1)))
    await wait_until_async(lambda: server.metric("convnet_inflight_requests", model=MODEL) >= 1, "the slow call in flight")
    return blocker


def test_sigterm_answers_all_256_calls_in_flight_and_the_open_stream_then_exits_0(start_server, reference):
    """All calls reached the server (the in-flight gauge says so) when SIGTERM comes: all OK."""
    server = start_server("--max-queue-size", "4096", env=slow_env(1.5, drain_s=0))

    async def main():
        calls = Calls(server)
        await calls.open()
        blocker = await blocked(calls, server)
        futures = calls.start(seed=100)
        stream_inputs = [images(2, seed=900 + i) for i in range(16)]
        requests = [pb.ClassifyRequest(model=MODEL, tensor=tensor(x), request_id=str(i))
                    for i, x in enumerate(stream_inputs)]

        async def requests_then_wait():
            for r in requests:
                yield r
            await asyncio.Event().wait()  # the stream stays open: the server must end it

        stream = calls.stubs[1].ClassifyStream(requests_then_wait(), timeout=60)
        await wait_until_async(
            lambda: server.metric("convnet_inflight_requests", model=MODEL) >= 1 + len(futures) + len(requests),
            "every call and stream request in flight")
        server.process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        replies, stream_status = {}, None
        try:
            async for reply in stream:
                replies[reply.request_id] = reply
        except grpc.aio.AioRpcError as exc:
            stream_status = exc.code()
        results = await asyncio.gather(*futures)
        first = await blocker
        await calls.close()
        return results, first, replies, stream_status, stream_inputs, sent, calls.inputs

    results, first, replies, stream_status, stream_inputs, sent, inputs = asyncio.run(main())
    counts = check_answers(results, inputs, reference)
    print(f"256 calls: {dict(counts)}; stream: {len(replies)} replies, then {stream_status}")
    assert counts == {"OK": 4 * PER_KIND} and first[0] == "OK", (counts, first[0])
    assert sorted(replies) == sorted(str(i) for i in range(len(stream_inputs)))
    for i, x in enumerate(stream_inputs):
        assert not replies[str(i)].HasField("error"), replies[str(i)].error
        assert_scores(reply_scores(replies[str(i)]), reference(MODEL, x))
    assert stream_status == grpc.StatusCode.UNAVAILABLE, stream_status
    assert server.process.wait(30) == 0
    assert time.monotonic() - sent < 10 + 1, "exited after the grace period"


@pytest.mark.parametrize("drain_s", [0, 3])
def test_sigterm_while_256_calls_are_still_arriving_gives_no_cancelled_and_no_unknown(start_server, reference, drain_s):
    """SIGTERM right after the first call is seen: the rest are still on their way. With no drain
    period each is OK or UNAVAILABLE (retryable); with one, every call is served."""
    server = start_server("--max-queue-size", "4096", env=slow_env(0.5, drain_s=drain_s))

    async def main():
        calls = Calls(server)
        await calls.open()
        blocker = await blocked(calls, server)
        futures = calls.start(seed=300)
        await wait_until_async(lambda: server.metric("convnet_inflight_requests", model=MODEL) >= 2,
                               "a call behind the slow one", interval=0.005)
        server.process.send_signal(signal.SIGTERM)
        results = await asyncio.gather(*futures)
        await blocker
        await calls.close()
        return results, calls.inputs

    results, inputs = asyncio.run(main())
    counts = check_answers(results, inputs, reference, allowed=("OK",) if drain_s else ("OK", "UNAVAILABLE"))
    print(f"drain_s={drain_s}: {dict(counts)}")
    assert server.process.wait(30) == 0


def test_sigterm_as_calls_arrive_with_no_drain_period_never_cancels_them(start_server, reference):
    """The issue's case: 64 KServe calls of 8 images, SIGTERM as soon as the first reaches a handler
    (the rest are still on their way), three times: each call is OK or UNAVAILABLE, never CANCELLED."""
    totals = collections.Counter()
    for round_ in range(3):
        server = start_server("--max-queue-size", "4096", env={"CONVNET_DRAIN_S": "0"})

        async def main():
            calls = Calls(server)
            await calls.open()
            futures = []
            for i in range(64):
                x = images(8, seed=1000 * round_ + i)
                calls.inputs.append(("kserve", x))
                futures.append(asyncio.ensure_future(calls.infer(i, x)))
            await wait_until_async(lambda: server.metric("convnet_requests_total", model=MODEL)
                                   + server.metric("convnet_inflight_requests", model=MODEL) >= 1,
                                   "the first call at a handler", interval=0.005)
            server.process.send_signal(signal.SIGTERM)
            results = await asyncio.gather(*futures)
            await calls.close()
            return results, calls.inputs

        results, inputs = asyncio.run(main())
        totals += check_answers(results, inputs, reference, allowed=("OK", "UNAVAILABLE"))
        assert server.process.wait(30) == 0
    print(f"3 rounds of 64: {dict(totals)}")
