"""Load beyond the configured limits is refused at once with RESOURCE_EXHAUSTED, and the server
serves normally again as soon as the load is gone. (The timed soak: test_soak.py.)"""
from __future__ import annotations

import asyncio
import time

import grpc
from test_reliability_faults import occupy_instance, slow_env, stubs, until
from test_server_helpers import assert_scores, images, reply_scores, tensor

from service.generated.convnet.v1 import convnet_pb2 as pb

MODEL = "cifar-tiny"


def test_calls_beyond_max_concurrent_rpcs_are_refused_at_once(start_server, reference):
    server = start_server("--max-concurrent-rpcs", "4", env=slow_env(1.5))

    async def main():
        channels, s = await stubs(server, 6)
        busy = [await occupy_instance(server, s[0], seed=1)]
        busy += [asyncio.ensure_future(stub.Classify(pb.ClassifyRequest(model=MODEL, tensor=tensor(images(1, seed=i))),
                                                     timeout=30)) for i, stub in enumerate(s[1:4])]
        await until(lambda: server.metric("convnet_inflight_requests", model=MODEL) >= 4)
        start = time.monotonic()
        try:
            await s[4].Classify(pb.ClassifyRequest(model=MODEL, tensor=tensor(images(1, seed=9))), timeout=30)
            refused = None
        except grpc.aio.AioRpcError as exc:
            refused = exc
        waited = time.monotonic() - start
        replies = await asyncio.gather(*busy)
        x = images(2, seed=10)
        after = await s[5].Classify(pb.ClassifyRequest(model=MODEL, tensor=tensor(x)), timeout=30)
        return refused, waited, replies, x, after

    refused, waited, replies, x, after = asyncio.run(main())
    assert refused is not None and refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused
    assert waited < 1.0, f"refused after {waited:.2f} s: it waited for the busy calls"
    assert all(len(r.results) == 1 for r in replies)
    assert_scores(reply_scores(after), reference(MODEL, x))
