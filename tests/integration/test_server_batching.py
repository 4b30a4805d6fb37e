"""Batching through a real server: many concurrent callers each get their own scores while batches
form; a full queue, deadlines, cancellation and shutdown behave as documented (docs/SERVICE.md)."""
from __future__ import annotations

import asyncio
import signal

import grpc
import numpy as np
import pytest
from test_server_helpers import assert_scores, images, marked, reply_scores, tensor

from bench.launcher import wait_until, wait_until_async
from service.generated.convnet.v1 import convnet_pb2 as pb
from service.generated.convnet.v1 import convnet_pb2_grpc


async def classify_all(target: str, requests: list[pb.ClassifyRequest], timeout: float = 60,
                       return_exceptions: bool = False) -> list:
    """Send every request at once from one asyncio client; replies (or errors) in request order."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = convnet_pb2_grpc.ClassifierStub(channel)
        return await asyncio.gather(*(stub.Classify(r, timeout=timeout) for r in requests),
                                    return_exceptions=return_exceptions)


def test_256_concurrent_callers_get_their_own_scores_while_batches_form(server, reference):
    model = "cifar-vgg"
    before_images = server.metric("convnet_images_total", model=model)
    before_batches = server.metric("convnet_batches_total", model=model)
    xs = [images(1 + i % 3, seed=1000 + i) for i in range(256)]
    replies = asyncio.run(classify_all(server.target, [
        pb.ClassifyRequest(model=model, tensor=tensor(x), request_id=str(i)) for i, x in enumerate(xs)]))
    expected = reference(model, np.concatenate(xs))
    offset = 0
    for i, (x, reply) in enumerate(zip(xs, replies)):
        assert reply.request_id == str(i)
        assert_scores(reply_scores(reply), expected[offset:offset + len(x)])
        offset += len(x)
    images_run = server.metric("convnet_images_total", model=model) - before_images
    batches_run = server.metric("convnet_batches_total", model=model) - before_batches
    assert images_run == sum(len(x) for x in xs)
    assert batches_run < images_run / 2, f"{batches_run} batches for {images_run} images: batches did not form"


HOLD = 777.0
"""A batch holding an image whose first value is HOLD computes for 1 s (the test hook of service/faults.py)."""


@pytest.fixture
def busy_server(start_server):
    """cifar-vgg on one instance: a batch of 64 images computes for tens of milliseconds, one holding
    a HOLD-marked image for 1 s."""
    return start_server(config={"model": {"cifar-vgg": {"max_batch_size": 64, "max_queue_size": 512, "instances": 1}}},
                        env={"CONVNET_INJECT_SLOW": f"{HOLD}:1.0"})


async def send_behind_a_held_batch(server, stubs, xs: list[np.ndarray]) -> list[asyncio.Future]:
    """Send xs[0] (HOLD-marked), wait until the instance took it, then the rest: they all queue
    behind it, so all of them are in flight at once however slowly the machine runs."""
    taken = server.metric("convnet_queue_wait_seconds_count", model="cifar-vgg")
    calls = [asyncio.ensure_future(stubs[0].Classify(pb.ClassifyRequest(model="cifar-vgg", tensor=tensor(xs[0])),
                                                     timeout=60))]
    await wait_for_metric(server, "convnet_queue_wait_seconds_count", taken + 1, model="cifar-vgg")
    calls += [asyncio.ensure_future(stub.Classify(pb.ClassifyRequest(model="cifar-vgg", tensor=tensor(x)), timeout=60))
              for stub, x in zip(stubs[1:], xs[1:])]
    await wait_for_metric(server, "convnet_inflight_requests", len(xs), model="cifar-vgg")
    return calls


def test_full_queue_answers_resource_exhausted_at_once_and_the_rest_succeed(start_server, reference):
    busy_server = start_server(config={"model": {"cifar-vgg": {"max_batch_size": 8, "max_queue_size": 64}}})
    xs = [images(8, seed=i) for i in range(60)]
    results = asyncio.run(classify_all(busy_server.target, [pb.ClassifyRequest(model="cifar-vgg", tensor=tensor(x))
                                                            for x in xs], return_exceptions=True))
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert refused and all(r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for r in refused)
    assert "queue full" in refused[0].details() and "max_queue_size=64" in refused[0].details()
    served = [(x, r) for x, r in zip(xs, results) if not isinstance(r, Exception)]
    assert len(served) + len(refused) == len(xs) and len(served) >= 8
    for x, reply in served:
        assert_scores(reply_scores(reply), reference("cifar-vgg", x))
    assert busy_server.metric("convnet_requests_total", model="cifar-vgg", code="RESOURCE_EXHAUSTED") == len(refused)
    assert busy_server.metric("convnet_queue_depth", model="cifar-vgg") == 0


async def wait_for_metric(server, name: str, at_least: float, **labels: str) -> None:
    await wait_until_async(lambda: server.metric(name, **labels) >= at_least, f"{name}{labels} >= {at_least}",
                           timeout=60)


async def connected_stubs(server, count: int) -> list[convnet_pb2_grpc.ClassifierStub]:
    """``count`` stubs on connections of their own, each connected already. Large requests sent
    together on one connection reach the server one after the other (HTTP/2 flow control)."""
    channels = [grpc.aio.insecure_channel(server.target) for _ in range(count)]
    await asyncio.gather(*(channel.channel_ready() for channel in channels))
    return [convnet_pb2_grpc.ClassifierStub(channel) for channel in channels]


async def _load_then(server, probe, load: int = 6):
    """Queue ``load`` requests of 64 cifar-vgg images, then run ``probe(stub)`` while they wait."""
    *stubs, probe_stub = await connected_stubs(server, load + 1)
    work = await send_behind_a_held_batch(server, stubs, [marked(64, HOLD, 0)] + [images(64, i) for i in range(1, load)])
    outcome = await probe(probe_stub)
    await asyncio.gather(*work)
    return outcome


def test_deadline_passing_in_the_queue_is_answered_without_computing(busy_server):
    images_before = busy_server.metric("convnet_images_total", model="cifar-vgg")

    async def probe(stub):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Classify(pb.ClassifyRequest(model="cifar-vgg", tensor=tensor(images(3, 99)), timeout_ms=10),
                                timeout=60)
        return info.value

    err = asyncio.run(_load_then(busy_server, probe))
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "in the queue; not computed" in err.details()
    assert busy_server.metric("convnet_images_total", model="cifar-vgg") - images_before == 6 * 64


def test_cancelled_call_leaves_the_queue_and_is_not_computed(start_server):
    """The instance is held by a batch made slow with the test hook (service/faults.py), so the
    probe is surely still queued when it is cancelled, however loaded the machine is."""
    slow = 777.0
    server = start_server(env={"CONVNET_INJECT_SLOW": f"{slow}:1.5"},
                          config={"model": {"cifar-vgg": {"max_batch_size": 64, "instances": 1}}})
    held = marked(1, slow, seed=97)

    async def main():
        holder, prober = await connected_stubs(server, 2)
        taken = server.metric("convnet_queue_wait_seconds_count", model="cifar-vgg")
        computing = holder.Classify(pb.ClassifyRequest(model="cifar-vgg", tensor=tensor(held)), timeout=60)
        # taken by the instance (its queue wait observed): it computes for 1.5 s
        await wait_for_metric(server, "convnet_queue_wait_seconds_count", taken + 1, model="cifar-vgg")
        call = prober.Classify(pb.ClassifyRequest(model="cifar-vgg", tensor=tensor(images(5, 98))), timeout=60)
        await wait_for_metric(server, "convnet_queue_depth", 5, model="cifar-vgg")
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await computing

    images_before = server.metric("convnet_images_total", model="cifar-vgg")
    asyncio.run(main())
    assert server.metric("convnet_images_total", model="cifar-vgg") - images_before == 1  # the probe never computed
    assert server.metric("convnet_queue_depth", model="cifar-vgg") == 0
    wait_until(lambda: server.metric("convnet_requests_total", model="cifar-vgg", code="CANCELLED") >= 1,
               "the server counts the cancellation (a moment after the client)", timeout=60)
    assert server.metric("convnet_requests_total", model="cifar-vgg", code="CANCELLED") == 1


def test_sigterm_finishes_queued_requests_then_exits_0(busy_server, reference):
    xs = [marked(64, HOLD, 500)] + [images(64, seed=500 + i) for i in range(1, 4)]

    async def main():
        stubs = await connected_stubs(busy_server, len(xs))
        calls = await send_behind_a_held_batch(busy_server, stubs, xs)
        busy_server.process.send_signal(signal.SIGTERM)
        return await asyncio.gather(*calls)

    replies = asyncio.run(main())
    for x, reply in zip(xs, replies):
        assert_scores(reply_scores(reply), reference("cifar-vgg", x))
    assert busy_server.process.wait(30) == 0
    assert "SIGTERM: stopping" in busy_server.output()
