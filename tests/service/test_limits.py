"""Concurrent-call limits per class (service/limits.py, taken through service/admission.py and its
gRPC guard) on an in-process server of the gRPC transport whose
methods hold their call open until the test releases them: each class is bounded on its own, a
call beyond its bound gets RESOURCE_EXHAUSTED naming the limit, and a finished, failed or
cancelled call gives its slot back. Live server with a token: tests/integration/test_access.py."""
from __future__ import annotations

import asyncio
import threading

import grpc
import pytest

from service.admission import Admission, Lifecycle
from service.grpc_transport import Transport
from service.guard import AdmissionGuard
from service.limits import CHECKS, GUARDED, WATCHES

CLASSIFY = "/convnet.v1.Classifier/Classify"
STREAM = "/convnet.v1.Classifier/ClassifyStream"
CHECK = "/grpc.health.v1.Health/Check"
WATCH = "/grpc.health.v1.Health/Watch"


class Methods:
    """Byte-in, byte-out methods under the real names, on the server's handler threads; each holds
    its call until ``release()``, or until the call ends (a handler thread must see its client
    cancel: nothing interrupts it)."""

    def __init__(self):
        self._changed = threading.Condition()
        self.released = False
        self.started = 0

    def release(self) -> None:
        with self._changed:
            self.released = True
            self._changed.notify_all()

    def hold(self, context) -> None:
        ended = []

        def end() -> None:
            with self._changed:
                ended.append(True)
                self._changed.notify_all()

        context.add_callback(end)
        with self._changed:
            self._changed.wait_for(lambda: self.released or ended)

    def unary(self, request: bytes, context) -> bytes:
        self.started += 1
        if request == b"fail":
            raise RuntimeError("boom")
        self.hold(context)
        return b"done"

    def stream(self, request: bytes, context):
        self.started += 1
        yield b"first"
        self.hold(context)
        yield b"last"

    def bidi(self, requests, context):
        self.started += 1
        yield from requests
        self.hold(context)

    def handlers(self):
        return {"convnet.v1.Classifier": {"Classify": grpc.unary_unary_rpc_method_handler(self.unary),
                                          "ClassifyStream": grpc.stream_stream_rpc_method_handler(self.bidi)},
                "grpc.health.v1.Health": {"Check": grpc.unary_unary_rpc_method_handler(self.unary),
                                          "Watch": grpc.unary_stream_rpc_method_handler(self.stream)}}


SERVING: list[tuple[Methods, grpc.Server]] = []


@pytest.fixture(autouse=True)
def servers_stopped():
    """A test that fails midway still releases its held calls and stops its server (whose handler
    threads would otherwise keep the interpreter from exiting)."""
    yield
    while SERVING:
        methods, server = SERVING.pop()
        methods.release()
        server.stop(None)


async def serving(limit: int, token: str | None = None):
    methods = Methods()
    limits = Admission(Lifecycle(), token, limit)
    transport = Transport(16, None, AdmissionGuard(limits, inference=(CLASSIFY,)), [])
    for service, handlers in methods.handlers().items():
        transport.add_registered_method_handlers(service, handlers)
    server = transport.server
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    SERVING.append((methods, server))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return server, channel, methods, limits


async def until(condition, what: str, timeout: float = 30.0):
    end = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < end:
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened within {timeout:g} s: {what}")


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call
    return exc.value


def test_each_class_is_bounded_on_its_own_and_slots_come_back():
    async def main():
        server, channel, methods, limits = await serving(2)
        classify, check = channel.unary_unary(CLASSIFY), channel.unary_unary(CHECK)
        watch = channel.unary_stream(WATCH)
        watches = [watch(b"") for _ in range(2)]
        assert [await w.read() for w in watches] == [b"first", b"first"]
        extra_watch = await refused(watch(b"").read())
        checks = [asyncio.ensure_future(check(b"")) for _ in range(2)]
        await until(lambda: limits.pools[CHECKS].active == 2, "two checks running")
        extra_check = await refused(check(b""))
        calls = [asyncio.ensure_future(classify(b"")) for _ in range(2)]
        await until(lambda: limits.pools[GUARDED].active == 2, "two guarded calls running")
        extra_call = await refused(classify(b""))
        full = {name: pool.active for name, pool in limits.pools.items()}
        methods.release()
        done = await asyncio.gather(*calls, *checks)
        assert [await w.read() for w in watches] == [b"last", b"last"]
        await until(lambda: all(p.active == 0 for p in limits.pools.values()), "every slot back")
        after = await classify(b""), await check(b"")
        await channel.close()
        server.stop(None)
        return extra_watch, extra_check, extra_call, full, done, after

    extra_watch, extra_check, extra_call, full, done, after = asyncio.run(main())
    assert full == {GUARDED: 2, CHECKS: 2, WATCHES: 2}
    for error, words in ((extra_watch, "health watch"), (extra_check, "health checks"),
                         (extra_call, "need the token")):
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_concurrent_rpcs" in error.details() and "at most 2" in error.details() and words in error.details()
    assert done == [b"done"] * 4 and after == (b"done", b"done")


def test_failed_and_cancelled_calls_give_their_slot_back():
    async def main():
        server, channel, methods, limits = await serving(1)
        classify, stream = channel.unary_unary(CLASSIFY), channel.stream_stream(STREAM)
        failed = await refused(classify(b"fail"))
        call = stream()
        await call.write(b"x")
        assert await call.read() == b"x"
        busy = await refused(classify(b""))
        call.cancel()
        await until(lambda: limits.pools[GUARDED].active == 0, "the cancelled stream's slot back")
        methods.release()
        after = await classify(b"")
        await channel.close()
        server.stop(None)
        return failed, busy, after

    failed, busy, after = asyncio.run(main())
    assert failed.code() == grpc.StatusCode.UNKNOWN
    assert busy.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and after == b"done"


def test_token_less_watches_never_take_a_slot_of_authenticated_calls_and_refused_calls_take_none():
    async def main():
        server, channel, methods, limits = await serving(2, token="s3cret")
        classify = channel.unary_unary(CLASSIFY)
        watches = [channel.unary_stream(WATCH)(b"") for _ in range(2)]
        assert [await w.read() for w in watches] == [b"first", b"first"]
        unauthenticated = [await refused(classify(b"")) for _ in range(3)]
        good = (("authorization", "bearer s3cret"),)
        calls = [asyncio.ensure_future(classify(b"", metadata=good)) for _ in range(2)]
        await until(lambda: limits.pools[GUARDED].active == 2, "two authenticated calls running")
        methods.release()
        done = await asyncio.gather(*calls)
        for w in watches:
            w.cancel()
        await channel.close()
        server.stop(None)
        return unauthenticated, done

    unauthenticated, done = asyncio.run(main())
    assert {e.code() for e in unauthenticated} == {grpc.StatusCode.UNAUTHENTICATED}
    assert done == [b"done", b"done"]
