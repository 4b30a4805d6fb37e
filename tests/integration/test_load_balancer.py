"""The real HAProxy, configured by deploy/haproxy/haproxy.cfg (rendered for loopback), balances
gRPC calls over two real server processes: every call of a burst succeeds with the same scores a
replica gives directly, streams and health checks pass through, and both replicas serve a share
(counted from each replica's own /metrics)."""
from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench import loopback
from service import client
from service.generated.convnet.v1 import convnet_pb2 as pb

pytestmark = pytest.mark.slow  # a real HAProxy in front of several servers

MODEL = "cifar-tiny"
BURST = 120
THREADS = 8
HEALTHCHECK = Path(loopback.DEPLOY) / "healthcheck.py"


def behind(servers) -> list[loopback.Replica]:
    return [loopback.Replica(s.target, f"127.0.0.1:{s.http_port}") for s in servers]


def served(server) -> float:
    return server.metric("convnet_requests_total", model=MODEL, api="classify", code="OK")


def test_haproxy_spreads_a_burst_of_classify_calls_over_both_replicas(start_server, tmp_path):
    replicas = [start_server(), start_server()]
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((1 + i % 3, 3, 32, 32)).astype(np.float32) for i in range(BURST)]
    direct = client.connect(replicas[0].target)
    expected = [[list(r.scores) for r in direct.Classify(
        pb.ClassifyRequest(model=MODEL, tensor=client.tensor_message(x)), timeout=30).results] for x in inputs[:3]]
    before = [served(r) for r in replicas]

    with loopback.haproxy(behind(replicas), tmp_path / "haproxy") as balancer:
        lb = balancer.grpc
        stub = client.connect(lb)

        def classify(x: np.ndarray) -> list[list[float]]:
            reply = stub.Classify(pb.ClassifyRequest(model=MODEL, tensor=client.tensor_message(x)), timeout=30)
            return [list(r.scores) for r in reply.results]

        with ThreadPoolExecutor(THREADS) as pool:
            answers = list(pool.map(classify, inputs))

    assert [len(a) for a in answers] == [len(x) for x in inputs]
    for got, want in zip(answers[:3], expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    shares = [served(r) - b for r, b in zip(replicas, before)]
    assert sum(shares) == BURST
    # Round-robin per call: each replica gets about half; a pinned connection would give one all.
    assert min(shares) >= BURST // 4, shares


def test_streams_and_health_checks_pass_through_haproxy(start_server, tmp_path):
    replicas = [start_server(), start_server()]
    with loopback.haproxy(behind(replicas), tmp_path / "haproxy") as balancer:
        lb = balancer.grpc
        stub = client.connect(lb)
        rng = np.random.default_rng(2)
        requests = [pb.ClassifyRequest(model=MODEL, request_id=f"r{i}",
                                       tensor=client.tensor_message(rng.standard_normal((2, 3, 32, 32)).astype(np.float32)))
                    for i in range(10)]
        replies = list(stub.ClassifyStream(iter(requests), timeout=30))
        assert sorted(r.request_id for r in replies) == sorted(r.request_id for r in requests)
        assert all(len(r.results) == 2 and not r.error.code_name for r in replies)

        with grpc.insecure_channel(lb) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=MODEL), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

        probe = subprocess.run([sys.executable, str(HEALTHCHECK), "--target", lb], capture_output=True, text=True, timeout=540)
        assert probe.returncode == 0, probe.stderr
        assert "SERVING" in probe.stdout
