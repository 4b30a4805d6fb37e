"""The real HAProxy, configured by deploy/haproxy/haproxy.cfg (rendered for loopback), balances the
HTTP/REST API over two real server processes as it balances gRPC: every request of a burst gets
the scores a replica gives directly, and both replicas serve a share (each one's own /metrics)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from http_helpers import MODEL, infer_binary, request, scores_of

from bench import loopback

BURST = 120


def served(server) -> float:
    return server.metric("convnet_requests_total", model=MODEL, api="http", code="OK")


def test_haproxy_spreads_http_requests_over_both_replicas(start_server, tmp_path, reference):
    replicas = [start_server(), start_server()]
    rng = np.random.default_rng(3)
    inputs = [rng.standard_normal((1 + i % 3, 3, 32, 32)).astype(np.float32) for i in range(BURST)]
    before = [served(r) for r in replicas]
    with loopback.haproxy([loopback.Replica(r.target, f"127.0.0.1:{r.http_port}") for r in replicas],
                          tmp_path / "haproxy") as lb:
        port = int(lb.http.rsplit(":", 1)[1])
        assert request(port, "GET", "/v2/health/ready").status == 200

        def infer(x: np.ndarray):
            return request(port, "POST", f"/v2/models/{MODEL}/infer", *infer_binary(x))

        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(infer, inputs))
    assert [r.status for r in replies] == [200] * BURST
    for reply, x in zip(replies[:3], inputs[:3]):
        np.testing.assert_allclose(scores_of(reply), reference(MODEL, x), rtol=1e-4, atol=1e-4)
    shares = [served(r) - b for r, b in zip(replicas, before)]
    assert sum(shares) == BURST and min(shares) >= BURST // 4, shares
