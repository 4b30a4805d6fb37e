"""The drain gate (service/admission.py's lifecycle through the guard of service/guard.py,
awaited through service/drain.py) on an in-process server of the gRPC transport, and the drain
settings."""
from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from service.config import ConfigError, ServerConfig, load_config
from service.admission import Admission, Lifecycle
from service.drain import SHUTTING_DOWN, Drain, Phase
from service.grpc_transport import Transport
from service.guard import AdmissionGuard

GATED = "/grpc.health.v1.Health/Check"


async def served(gated: tuple[str, ...]):
    """A health server whose ``gated`` methods are inference calls; and its Drain."""
    drain = Drain(Lifecycle())
    transport = Transport(4, None, AdmissionGuard(Admission(drain.lifecycle), gated, exempt=()), [])
    transport.add(health_pb2_grpc.add_HealthServicer_to_server, health.HealthServicer())
    server = transport.server
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return server, channel, health_pb2_grpc.HealthStub(channel), drain


def test_calls_are_served_while_draining_and_refused_unavailable_from_closing_on():
    async def main():
        server, channel, stub, drain = await served((GATED,))
        drain.advance(Phase.DRAINING)
        served_while_draining = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        drain.advance(Phase.CLOSING)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        drain.advance(Phase.DRAINING)  # never back
        await channel.close()
        server.stop(None)
        return served_while_draining, refused.value, drain.phase

    reply, refused, phase = asyncio.run(main())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert refused.code() == grpc.StatusCode.UNAVAILABLE and refused.details() == SHUTTING_DOWN
    assert phase == Phase.CLOSING


def test_ungated_methods_are_not_refused_and_not_counted():
    async def main():
        server, channel, stub, drain = await served(("/some.Other/",))
        drain.advance(Phase.CLOSING)
        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        await channel.close()
        server.stop(None)
        return reply, drain.inflight

    reply, inflight = asyncio.run(main())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING and inflight == 0


def test_idle_waits_for_the_calls_in_flight():
    async def main():
        drain = Drain(Lifecycle())
        drain.lifecycle.enter()
        early = await drain.idle(0.01)
        waiting = asyncio.ensure_future(drain.idle(5))
        await asyncio.sleep(0)
        drain.lifecycle.leave()
        return early, await waiting

    assert asyncio.run(main()) == (False, True)


def test_drain_settings_from_flags_and_environment_and_their_checks():
    config = load_config(None, {"drain_s": 3.5}, {"CONVNET_STREAM_MAX_IMAGES": "64", "CONVNET_STREAM_MAX_BYTES": "4096"})
    assert (config.drain_s, config.stream_max_images, config.stream_max_bytes) == (3.5, 64, 4096)
    assert ServerConfig().drain_s <= ServerConfig().shutdown_grace_s
    with pytest.raises(ConfigError, match="drain_s: expected a number >= 0"):
        ServerConfig(drain_s=-1)
    with pytest.raises(ConfigError, match="stream_max_images: expected an integer >= 1, got 0"):
        ServerConfig(stream_max_images=0)
    with pytest.raises(ConfigError, match="stream_max_bytes: expected an integer >= 1024"):
        ServerConfig(stream_max_bytes=10)


def test_signals_before_the_event_loop_are_recorded_not_acted_on():
    import os
    import signal

    from service.signals import EarlySignals

    saved = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)}
    early = EarlySignals()
    try:
        early.install()
        os.kill(os.getpid(), signal.SIGHUP)  # the default action would end this process
        os.kill(os.getpid(), signal.SIGTERM)
        received = early.take()
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
    assert received == [signal.SIGHUP, signal.SIGTERM] and early.take() == []
