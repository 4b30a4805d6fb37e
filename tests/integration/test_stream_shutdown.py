"""Streams at shutdown (issue 16 item 6): a draining server answers what the stream sent, then
ends it with UNAVAILABLE so the client reconnects elsewhere, instead of answering each new
request in-band with an error for as long as the client keeps sending.

The client is grpc's blocking API. grpc's asyncio client has a race of its own here: a write
that meets the already-ended call replaces the server's status with INTERNAL "Internal error from
Core" (grpc/aio/_call.py, ``_write``), whatever status the server sent.
"""
from __future__ import annotations

import signal
import threading

import grpc
from test_server_helpers import assert_scores, images, reply_scores, tensor

from service.generated.convnet.v1 import convnet_pb2 as pb
from service.generated.convnet.v1 import convnet_pb2_grpc

MODEL = "cifar-tiny"
WINDOW = 16


def test_a_busy_stream_is_ended_unavailable_by_a_draining_server_with_no_in_band_errors(start_server, reference):
    server = start_server(env={"CONVNET_DRAIN_S": "0"})
    xs = [images(2, seed=i) for i in range(20)]
    window = threading.Semaphore(WINDOW)
    ended = threading.Event()

    def requests():
        i = 0
        while not ended.is_set():  # as long as the server reads: only the server ends this stream
            if window.acquire(timeout=1):
                yield pb.ClassifyRequest(model=MODEL, tensor=tensor(xs[i % len(xs)]), request_id=str(i))
                i += 1

    replies, status = [], None
    with grpc.insecure_channel(server.target) as channel:
        try:
            for reply in convnet_pb2_grpc.ClassifierStub(channel).ClassifyStream(requests(), timeout=60):
                replies.append(reply)
                window.release()
                if len(replies) == 50:
                    server.process.send_signal(signal.SIGTERM)
                if reply.HasField("error"):
                    break  # the old behaviour: an in-band error per request, for as long as it is asked
        except grpc.RpcError as exc:
            status = exc.code(), exc.details()
        finally:
            ended.set()
    errors = [r.error for r in replies if r.HasField("error")]
    assert not errors, f"{len(errors)} in-band errors, e.g. {errors[0]}"
    assert status is not None and status[0] == grpc.StatusCode.UNAVAILABLE and "shutting down" in status[1], status
    assert len(replies) >= 50
    for reply in replies:
        assert_scores(reply_scores(reply), reference(MODEL, xs[int(reply.request_id) % len(xs)]))
    assert server.process.wait(30) == 0
