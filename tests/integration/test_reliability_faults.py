"""Faults inside a live server and callers that go away: a failing batch fails only its own
requests, cancellations and disconnects leak nothing, SIGTERM drains within the grace period.

Batches are made to fail or to compute slowly with the test hook of service/faults.py: an image
whose first value is FAULT (or SLOW) triggers it, no other image does.
"""
from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import grpc
import pytest
from test_server_helpers import assert_scores, images, marked, reply_scores, tensor
from tritonclient.grpc import service_pb2, service_pb2_grpc

from bench.launcher import wait_until_async
from service.generated.convnet.v1 import convnet_pb2 as pb
from service.generated.convnet.v1 import convnet_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
MODEL = "cifar-tiny"
FAULT, SLOW = 1234.5, 777.0


def slow_env(seconds: float) -> dict[str, str]:
    return {"CONVNET_INJECT_SLOW": f"{SLOW}:{seconds}", "CONVNET_INJECT_FAULT": str(FAULT)}


async def stubs(server, count: int):
    channels = [grpc.aio.insecure_channel(server.target) for _ in range(count)]
    await asyncio.gather(*(c.channel_ready() for c in channels))
    return channels, [convnet_pb2_grpc.ClassifierStub(c) for c in channels]


async def until(predicate, timeout: float = 20.0) -> None:
    await wait_until_async(predicate, "condition", timeout)


def taken_from_queue(server) -> float:
    """Requests an instance has taken from the queue so far (each observes its queue wait when taken)."""
    return server.metric("convnet_queue_wait_seconds_count", model=MODEL)


async def occupy_instance(server, stub, seed: int) -> asyncio.Future:
    """Send one SLOW-marked image and return its call once an instance has taken it: the instance
    computes it for as long as slow_env() says, and the requests sent next queue behind it."""
    taken = taken_from_queue(server)
    call = asyncio.ensure_future(stub.Classify(pb.ClassifyRequest(model=MODEL, tensor=tensor(marked(1, SLOW, seed))),
                                               timeout=30))
    await until(lambda: taken_from_queue(server) > taken)
    return call


def gauges_at_zero(server) -> bool:
    return (server.metric("convnet_queue_depth", model=MODEL) == 0
            and server.metric("convnet_inflight_requests", model=MODEL) == 0)


def test_a_failing_batch_fails_only_its_own_requests_with_an_error_id_in_the_log(start_server, reference):
    server = start_server(config={"model": {MODEL: {"max_batch_size": 4}}}, env=slow_env(0.6))
    xs = [images(1, seed=400 + i) for i in range(12)]
    xs[5] = marked(1, FAULT, 405)

    async def main():
        channels, (first, *rest) = await stubs(server, 13)
        blocker = await occupy_instance(server, first, seed=1)  # for 0.6 s
        calls = [stub.Classify(pb.ClassifyRequest(model=MODEL, tensor=tensor(x), request_id=str(i)), timeout=30)
                 for i, (stub, x) in enumerate(zip(rest, xs))]
        results = await asyncio.gather(*calls, return_exceptions=True)
        await blocker
        return results

    results = asyncio.run(main())
    failed = {i: r for i, r in enumerate(results) if isinstance(r, grpc.aio.AioRpcError)}
    assert 5 in failed and failed[5].code() == grpc.StatusCode.INTERNAL
    error_id = re.search(r"error id ([0-9a-f]{12})", failed[5].details()).group(1)
    assert all(r.code() == grpc.StatusCode.INTERNAL and error_id in r.details() for r in failed.values())
    assert len(failed) <= 4, f"{len(failed)} requests failed; one batch holds at most 4"
    for i, r in enumerate(results):
        if i not in failed:
            assert_scores(reply_scores(r), reference(MODEL, xs[i]))
    log = server.output()
    assert f"[error id {error_id}]" in log and "InjectedFault" in log
    for i in range(5):  # the next batches succeed
        x = images(2, seed=600 + i)
        reply = convnet_pb2_grpc.ClassifierStub(server.channel()).Classify(pb.ClassifyRequest(model=MODEL, tensor=tensor(x)),
                                                                           timeout=30)
        assert_scores(reply_scores(reply), reference(MODEL, x))
    assert server.metric("convnet_requests_total", model=MODEL, code="INTERNAL") == len(failed)


def test_cancelling_mid_queue_and_mid_compute_leaks_nothing(start_server, reference):
    server = start_server(env=slow_env(1.0))
    images_before = server.metric("convnet_images_total", model=MODEL)

    async def main():
        channels, stubs_ = await stubs(server, 5)
        taken = taken_from_queue(server)
        computing = stubs_[0].Classify(pb.ClassifyRequest(model=MODEL, tensor=tensor(marked(1, SLOW, 2))), timeout=30)
        await until(lambda: taken_from_queue(server) > taken)  # taken by the instance: it computes for 1 s
        queued = [stub.Classify(pb.ClassifyRequest(model=MODEL, tensor=tensor(images(2, seed=i))), timeout=30)
                  for i, stub in enumerate(stubs_[1:])]
        await until(lambda: server.metric("convnet_queue_depth", model=MODEL) == 8)
        for call in [computing, *queued]:
            call.cancel()
        await until(lambda: gauges_at_zero(server))

    asyncio.run(main())
    computed = lambda: server.metric("convnet_images_total", model=MODEL) - images_before  # noqa: E731
    asyncio.run(until(lambda: computed() == 1))  # the batch already computing finished, its rows dropped
    x = images(3, seed=9)
    reply = convnet_pb2_grpc.ClassifierStub(server.channel()).Classify(pb.ClassifyRequest(model=MODEL, tensor=tensor(x)),
                                                                       timeout=30)
    assert_scores(reply_scores(reply), reference(MODEL, x))
    assert computed() == 1 + 3  # the queue is FIFO: the cancelled queued requests were never computed before it
    asyncio.run(until(lambda: server.metric("convnet_requests_total", model=MODEL, code="CANCELLED") == 5))


CLIENT = textwrap.dedent("""
    import os, sys, grpc, numpy as np
    from service.generated.convnet.v1 import convnet_pb2 as pb, convnet_pb2_grpc
    target, slow = sys.argv[1], float(sys.argv[2])
    def request(value=None):
        x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype("<f4")
        if value is not None:
            x[0, 0, 0, 0] = value
        return pb.ClassifyRequest(model="cifar-tiny", tensor=pb.Tensor(shape=x.shape, data=x.tobytes()))
    stubs = [convnet_pb2_grpc.ClassifierStub(grpc.insecure_channel(target)) for _ in range(4)]
    futures = [stubs[0].Classify.future(request(slow), timeout=60)]
    print("slow sent", flush=True)
    sys.stdin.readline()  # the test answers once the slow batch was taken
    futures += [stub.Classify.future(request(), timeout=60) for stub in stubs[1:3]]
    stream = stubs[3].ClassifyStream(iter([request(), request(), request(slow)] + [request()] * 3), timeout=60)
    print("sent", flush=True)
    sys.stdin.readline()  # hold the connections until the test kills this process
""")


def test_a_client_that_disconnects_mid_queue_mid_compute_and_mid_stream_leaks_nothing(start_server, reference, tmp_path):
    """Twice: the first round may start handler threads the pool then keeps (service.grpc_transport);
    a thread left stuck would be a new one in the second round."""
    server = start_server(env=slow_env(1.5))
    descriptors = lambda: len(list(Path(f"/proc/{server.process.pid}/fd").iterdir()))  # noqa: E731
    threads = lambda: len(list(Path(f"/proc/{server.process.pid}/task").iterdir()))  # noqa: E731
    before = descriptors()
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    pooled = []
    for _ in range(2):
        taken = taken_from_queue(server)
        client = subprocess.Popen([sys.executable, str(script), server.target, str(SLOW)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, cwd=str(tmp_path.parent),
                                  env={"PYTHONPATH": str(ROOT)})
        try:
            assert client.stdout.readline().strip() == "slow sent"
            asyncio.run(until(lambda: taken_from_queue(server) > taken))
            client.stdin.write("go\n")
            client.stdin.flush()
            assert client.stdout.readline().strip() == "sent"
            asyncio.run(until(lambda: server.metric("convnet_queue_depth", model=MODEL) >= 2))
        finally:
            client.kill()  # no goodbye: the connections just drop
            client.wait(10)
        asyncio.run(until(lambda: gauges_at_zero(server)))
        asyncio.run(until(lambda: descriptors() <= before + 1))  # the dropped connections' sockets are closed
        pooled.append(threads())
    assert pooled[1] <= pooled[0] + 1, pooled  # no thread left behind (a computing batch may start one)
    x = images(2, seed=11)
    reply = convnet_pb2_grpc.ClassifierStub(server.channel()).Classify(pb.ClassifyRequest(model=MODEL, tensor=tensor(x)),
                                                                       timeout=30)
    assert_scores(reply_scores(reply), reference(MODEL, x))
    assert server.health() == "SERVING"


def test_sigterm_drains_in_flight_work_refuses_new_calls_reports_not_serving_and_exits_0(start_server, reference):
    server = start_server(env=slow_env(2.0))
    xs = [marked(1, SLOW, 20)] + [images(2, seed=21 + i) for i in range(4)]

    async def main():
        channels, stubs_ = await stubs(server, len(xs) + 1)
        calls = [asyncio.ensure_future(stub.Classify(pb.ClassifyRequest(model=MODEL, tensor=tensor(x)), timeout=30))
                 for stub, x in zip(stubs_, xs)]
        await until(lambda: server.metric("convnet_inflight_requests", model=MODEL) >= len(xs))
        server.process.send_signal(signal.SIGTERM)
        await until(lambda: "SIGTERM: stopping" in server.output())
        assert await asyncio.to_thread(server.health) == "NOT_SERVING"
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stubs_[-1].Classify(pb.ClassifyRequest(model=MODEL, tensor=tensor(images(1, seed=0))), timeout=10)
        kserve = service_pb2_grpc.GRPCInferenceServiceStub(channels[-1])
        request = service_pb2.ModelInferRequest(model_name=MODEL)
        request.inputs.add(name="input", datatype="FP32", shape=[1, 3, 32, 32])
        request.raw_input_contents.append(images(1, seed=0).tobytes())
        with pytest.raises(grpc.aio.AioRpcError) as refused_kserve:
            await kserve.ModelInfer(request, timeout=10)
        ready = await kserve.ServerReady(service_pb2.ServerReadyRequest(), timeout=10)
        done = [c.done() for c in calls]
        return await asyncio.gather(*calls), refused.value, refused_kserve.value, ready.ready, done

    replies, refused, refused_kserve, ready, done_early = asyncio.run(main())
    assert refused.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" in refused.details()
    assert refused_kserve.code() == grpc.StatusCode.UNAVAILABLE and not ready
    assert not all(done_early), "the work finished before the refusals were checked: the test proves nothing"
    for x, reply in zip(xs, replies):
        expected = reference(MODEL, x) if x[0, 0, 0, 0] != SLOW else None
        if expected is not None:
            assert_scores(reply_scores(reply), expected)
        else:
            assert len(reply.results) == 1
    assert server.process.wait(30) == 0


def test_work_left_at_the_end_of_the_grace_period_gets_unavailable_and_the_server_exits_0(start_server):
    server = start_server("--shutdown-grace-s", "0.5", env=slow_env(4.0))

    async def main():
        channels, stubs_ = await stubs(server, 3)
        calls = [await occupy_instance(server, stubs_[0], seed=3)]
        calls += [asyncio.ensure_future(s.Classify(pb.ClassifyRequest(model=MODEL, tensor=tensor(images(1, seed=4))),
                                                   timeout=30)) for s in stubs_[1:]]
        await until(lambda: server.metric("convnet_inflight_requests", model=MODEL) >= 3)
        start = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        results = await asyncio.gather(*calls, return_exceptions=True)
        return results, time.monotonic() - start

    results, waited = asyncio.run(main())
    assert all(isinstance(r, grpc.aio.AioRpcError) and r.code() == grpc.StatusCode.UNAVAILABLE for r in results), results
    assert "while this request was computing" in results[0].details()
    assert all("before this request was computed" in r.details() for r in results[1:])
    assert waited < 3.0, f"answered after {waited:.1f} s; the grace period is 0.5 s and the batch computes 4 s"
    assert server.process.wait(10) == 0
