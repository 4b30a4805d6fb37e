"""The one admission path (service/admission.py) on its own: the order of its checks, what a refused
call holds (nothing), the lifecycle every readiness answer reads, and its waiters (service/drain.py)."""
from __future__ import annotations

import asyncio
import threading

import grpc
import pytest

from service.admission import (HEALTH_CHECK, HEALTH_WATCH, INFERENCE, SHUTTING_DOWN, TOKEN_GUARDED, Admission, Call,
                               Lifecycle, Refusal, Stage)
from service.drain import Drain

TOKEN = ("Bearer s3cret",)


def refusal(admission: Admission, call: Call) -> Refusal:
    with pytest.raises(Refusal) as refused:
        admission.admit(call)
    return refused.value


def test_token_then_drain_then_pool_and_a_refused_call_holds_nothing():
    lifecycle = Lifecycle()
    refused = []
    admission = Admission(lifecycle, "s3cret", max_concurrent=1, on_refused=refused.append)
    assert refusal(admission, Call(INFERENCE, "/m/Infer")).code == grpc.StatusCode.UNAUTHENTICATED
    assert lifecycle.inflight == 0 and admission.pools["guarded"].active == 0
    first = admission.admit(Call(INFERENCE, "/m/Infer", TOKEN))
    assert lifecycle.inflight == 1 and admission.pools["guarded"].active == 1
    full = refusal(admission, Call(TOKEN_GUARDED, "/m/Meta", TOKEN))
    assert full.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_concurrent_rpcs" in full.message
    assert lifecycle.inflight == 1  # the refused inference call gave its place in flight back
    health = admission.admit(Call(HEALTH_CHECK, "/grpc.health.v1.Health/Check"))  # no token, its own pool
    first.release()
    first.release()  # once only
    assert lifecycle.inflight == 0 and admission.pools["guarded"].active == 0
    lifecycle.advance(Stage.CLOSING)
    closed = refusal(admission, Call(INFERENCE, "/m/Infer", TOKEN))
    assert (closed.code, closed.message) == (grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
    assert [c.name for c in refused] == ["/m/Infer"] and lifecycle.inflight == 0
    admission.admit(Call(TOKEN_GUARDED, "/m/Meta", TOKEN)).release()  # metadata still answered while closing
    health.release()
    watch = admission.admit(Call(HEALTH_WATCH, "/grpc.health.v1.Health/Watch"))  # no token either
    assert admission.pools["health-watches"].active == 1
    watch.release()


def test_the_lifecycle_only_advances_and_readiness_is_serving_only():
    lifecycle = Lifecycle()
    seen = []
    lifecycle.watch(lambda: seen.append(lifecycle.stage))
    assert lifecycle.serving and not lifecycle.refusing
    lifecycle.advance(Stage.DRAINING)
    assert not lifecycle.serving and not lifecycle.refusing and lifecycle.enter()
    lifecycle.advance(Stage.SERVING)
    lifecycle.advance(Stage.CLOSING)
    assert lifecycle.refusing and not lifecycle.enter()
    assert seen == [Stage.DRAINING, Stage.CLOSING]


def test_waiters_wake_on_calls_leaving_from_another_thread_and_on_advancing():
    async def main():
        drain = Drain(Lifecycle())
        lifecycle = drain.lifecycle
        assert lifecycle.enter() and lifecycle.enter()
        idle = asyncio.ensure_future(drain.idle(10))
        closing = asyncio.ensure_future(drain.closing())
        await asyncio.sleep(0)
        threads = [threading.Thread(target=lifecycle.leave) for _ in range(2)]
        for t in threads:
            t.start()
        assert await idle is True
        assert not closing.done()
        threading.Thread(target=lifecycle.advance, args=(Stage.CLOSING,)).start()
        await asyncio.wait_for(closing, 10)
        assert await drain.idle(0) is True and lifecycle._on_idle == [] and lifecycle._on_advance == []

    asyncio.run(main())


def guarded_health(admission: Admission, **guard) -> tuple[grpc.Server, int]:
    """A started server of the gRPC transport serving grpc.health.v1 through ``AdmissionGuard(admission, **guard)``."""
    from grpc_health.v1 import health, health_pb2_grpc

    from service.grpc_transport import Transport
    from service.guard import AdmissionGuard

    transport = Transport(4, None, AdmissionGuard(admission, **guard), [])
    transport.add(health_pb2_grpc.add_HealthServicer_to_server, health.HealthServicer())
    port = transport.server.add_insecure_port("127.0.0.1:0")
    transport.server.start()
    return transport.server, port


def test_the_grpc_guard_applies_the_token_the_drain_gate_and_the_slots():
    """service.guard.AdmissionGuard on the server's gRPC transport (service.grpc_transport)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    gated = "/grpc.health.v1.Health/Check"
    admission = Admission(Lifecycle(), "s3cret", max_concurrent=4)
    server, port = guarded_health(admission, inference=(gated,), exempt=())
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            check = health_pb2_grpc.HealthStub(channel).Check
            with pytest.raises(grpc.RpcError) as anonymous:
                check(health_pb2.HealthCheckRequest(), timeout=10)
            served = check(health_pb2.HealthCheckRequest(), timeout=10, metadata=(("authorization", TOKEN[0]),))
            admission.lifecycle.advance(Stage.CLOSING)
            with pytest.raises(grpc.RpcError) as closing:
                check(health_pb2.HealthCheckRequest(), timeout=10, metadata=(("authorization", TOKEN[0]),))
    finally:
        server.stop(None)
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert served.status == health_pb2.HealthCheckResponse.SERVING
    assert (closing.value.code(), closing.value.details()) == (grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
    assert admission.lifecycle.inflight == 0 and admission.pools["guarded"].active == 0


def test_a_health_watch_ends_unavailable_when_the_transport_is_about_to_stop():
    """A watch never ends by itself: at STOPPED the guard closes it and ends it UNAVAILABLE,
    so that it does not hold the transport's stop for the whole grace; its slot is given back."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    watch = "/grpc.health.v1.Health/Watch"
    admission = Admission(Lifecycle(), max_concurrent=4)
    server, port = guarded_health(admission, inference=(), watches=(watch,))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            replies = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=30)
            first = next(replies)
            assert admission.pools["health-watches"].active == 1
            admission.lifecycle.advance(Stage.STOPPED)
            with pytest.raises(grpc.RpcError) as ended:
                next(replies)
    finally:
        server.stop(None)
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE and "the server stopped" in ended.value.details()
    assert admission.pools["health-watches"].active == 0
