"""service/grpc_transport.py on an in-process server: plain methods run on the handler thread,
coroutine methods and async-generator streams on the event loop (aborts become the call's status,
a request stream is read as the coroutine asks), a cancelled call cancels its coroutine, and a
method the servicer lacks answers UNIMPLEMENTED."""
from __future__ import annotations

import asyncio
import threading

import grpc
import pytest

from service.grpc_transport import Transport

SERVICE = "test.Bridge"


class Servicer:
    """Byte-in, byte-out methods that say which thread ran them."""

    def __init__(self):
        self.cancelled = threading.Event()
        self.started = threading.Event()

    def Plain(self, request: bytes, context) -> bytes:
        return threading.current_thread().name.encode()

    async def Coroutine(self, request: bytes, context) -> bytes:
        if request == b"abort":
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "asked to abort")
        if request == b"hang":
            self.started.set()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        return threading.current_thread().name.encode() + b" " + request

    async def Echo(self, requests, context):
        async for request in requests:
            if request == b"end":
                await context.abort(grpc.StatusCode.UNAVAILABLE, "stream ended")
            yield request.upper()

    def Missing(self, request: bytes, context) -> bytes:
        raise NotImplementedError("not here")


def add(servicer: Servicer, registration) -> None:
    """What a generated ``add_*Servicer_to_server`` does."""
    identity = dict(request_deserializer=None, response_serializer=None)
    handlers = {"Plain": grpc.unary_unary_rpc_method_handler(servicer.Plain, **identity),
                "Coroutine": grpc.unary_unary_rpc_method_handler(servicer.Coroutine, **identity),
                "Echo": grpc.stream_stream_rpc_method_handler(servicer.Echo, **identity),
                "Missing": grpc.unary_unary_rpc_method_handler(servicer.Missing, **identity)}
    registration.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    registration.add_registered_method_handlers(SERVICE, handlers)


@pytest.fixture
def served():
    """(servicer, channel) with the transport's loop running in a thread of its own."""
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, name="the-loop", daemon=True)
    runner.start()
    transport = Transport(4, loop, None, [])
    servicer = Servicer()
    transport.add(add, servicer)
    port = transport.server.add_insecure_port("127.0.0.1:0")
    transport.server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield servicer, channel
    asyncio.run_coroutine_threadsafe(transport.stop(0), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    runner.join(30)
    loop.close()


def call(channel, method: str, request: bytes = b"", **kwargs):
    return channel.unary_unary(f"/{SERVICE}/{method}")(request, **kwargs)


def test_plain_methods_run_on_the_handler_thread_coroutines_on_the_loop(served):
    servicer, channel = served
    assert call(channel, "Plain").startswith(b"grpc")
    assert call(channel, "Coroutine", b"x") == b"the-loop x"


def test_an_abort_on_the_loop_is_the_calls_status(served):
    servicer, channel = served
    with pytest.raises(grpc.RpcError) as aborted:
        call(channel, "Coroutine", b"abort", timeout=10)
    assert (aborted.value.code(), aborted.value.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "asked to abort")


def test_a_cancelled_call_cancels_its_coroutine(served):
    servicer, channel = served
    future = channel.unary_unary(f"/{SERVICE}/Coroutine").future(b"hang", timeout=30)
    assert servicer.started.wait(10)
    future.cancel()
    assert servicer.cancelled.wait(10)


def test_a_stream_is_read_and_answered_on_the_loop_and_ends_with_its_abort(served):
    servicer, channel = served
    replies = channel.stream_stream(f"/{SERVICE}/Echo")(iter([b"a", b"b", b"end", b"never"]), timeout=10)
    got = []
    with pytest.raises(grpc.RpcError) as ended:
        for reply in replies:
            got.append(reply)
    assert got == [b"A", b"B"]
    assert (ended.value.code(), ended.value.details()) == (grpc.StatusCode.UNAVAILABLE, "stream ended")


def test_a_method_the_servicer_lacks_answers_unimplemented(served):
    servicer, channel = served
    with pytest.raises(grpc.RpcError) as missing:
        call(channel, "Missing", timeout=10)
    assert missing.value.code() == grpc.StatusCode.UNIMPLEMENTED and "Missing" in missing.value.details()
