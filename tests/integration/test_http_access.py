"""The HTTP port under the gRPC port's rules: the bearer token (health exempt), TLS and mutual TLS
from the same files, bodies bounded by max_message_bytes, slow or short bodies answered without
holding up other callers, a full queue (429) and a stopping server (503)."""
from __future__ import annotations

import gzip
import http.client
import json
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from http_helpers import MODEL, infer_binary, infer_json, raw_request, request, scores_of
from test_reliability_faults import SLOW, marked, slow_env
from test_server_helpers import assert_scores, images
from throwaway_ca import ThrowawayCA
from tritonclient.grpc import service_pb2, service_pb2_grpc

from bench.launcher import launch_server, wait_until

ROOT = Path(__file__).resolve().parents[2]
INFER = f"/v2/models/{MODEL}/infer"


def test_bearer_token_on_every_endpoint_but_health_and_the_page(start_server, reference):
    server = start_server(env={"CONVNET_AUTH_TOKEN": "s3cret-token"})
    port, x = server.http_port, images(1, seed=21)
    for path in ("/v2/health/live", "/v2/health/ready", "/"):
        assert request(port, "GET", path).status == 200
    for path in ("/v2", f"/v2/models/{MODEL}", f"/v2/models/{MODEL}/ready", "/api/status", "/samples"):
        reply = request(port, "GET", path)
        assert reply.status == 401 and reply.headers["www-authenticate"] == "Bearer", path
    cases = [({}, "received none"), ({"Authorization": "Basic czNjcmV0"}, "received another scheme"),
             ({"Authorization": "Bearer wrong"}, "received one that is not")]
    for headers, message in cases:
        reply = request(port, "POST", INFER, infer_json(x), headers)
        assert reply.status == 401 and message in reply.error
    for scheme in ("Bearer", "bearer", "BEARER"):
        reply = request(port, "POST", INFER, infer_json(x), {"Authorization": f"{scheme} s3cret-token"})
        assert reply.status == 200
        assert_scores(scores_of(reply), reference(MODEL, x))
    assert request(port, "GET", "/v2", headers={"Authorization": "bearer s3cret-token"}).status == 200


def test_tls_and_mutual_tls_use_the_grpc_settings(model_repo, tmp_path):
    ca = ThrowawayCA(tmp_path / "ca")
    cert, client = ca.issue("server", server=True), ca.issue("client", server=False)
    server = launch_server(tmp_path / "s", "--tls-cert", str(cert.cert), "--tls-key", str(cert.key),
                           "--tls-client-ca", str(ca.cert), models=model_repo, health=False, timeout=300)
    port = server.http_port
    try:
        trusting = ssl.create_default_context(cafile=str(ca.cert))
        with pytest.raises((ssl.SSLError, ConnectionError)):  # no client certificate: the handshake fails
            request(port, "GET", "/v2/health/ready", context=trusting)
        trusting.load_cert_chain(str(client.cert), str(client.key))
        assert request(port, "GET", "/v2/health/ready", context=trusting).status == 200
        assert request(port, "POST", INFER, infer_json(images(1, 2)), context=trusting).status == 200
        with pytest.raises(Exception):  # plaintext to a TLS port gets no HTTP answer
            raw_request(port, b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n", timeout=5)
    finally:
        assert server.stop() == 0


def test_bodies_over_max_message_bytes_are_413_and_slow_bodies_408_without_blocking_others(start_server, reference):
    server = start_server("--max-message-bytes", "16384", "--http-read-timeout-s", "1")
    port, x = server.http_port, images(1, seed=22)  # 3 x 32 x 32 floats: ~60 KB as JSON, 12 KB binary
    reply = request(port, "POST", INFER, infer_json(x))
    assert reply.status == 413 and "expected at most 16384 bytes (max_message_bytes)" in reply.error
    chunked = (b"POST " + INFER.encode() + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"".join(b"%x\r\n" % 4096 + bytes(4096) + b"\r\n" for _ in range(5)) + b"0\r\n\r\n")
    reply = raw_request(port, chunked)
    assert reply.status == 413 and "received more" in reply.json()["error"]
    bomb = gzip.compress(bytes(8 * 1024 * 1024))  # ~8 KB that inflate to 8 MiB: bounded after inflating
    reply = request(port, "POST", INFER, bomb, {"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert reply.status == 413 and "received more" in reply.error

    short = socket.create_connection(("127.0.0.1", port))  # announces 5000 bytes, sends 10, waits
    short.sendall(b"POST " + INFER.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"{" * 10)
    body, headers = infer_binary(x)
    started = time.monotonic()
    reply = request(port, "POST", INFER, body, headers)  # others are answered meanwhile
    assert reply.status == 200 and time.monotonic() - started < 1
    assert_scores(scores_of(reply), reference(MODEL, x))
    answer = http.client.HTTPResponse(short)
    answer.begin()
    error = json.loads(answer.read())["error"]
    short.close()
    assert answer.status == 408 and "expected the 5000 bytes of Content-Length within 1 s" in error
    assert request(port, "GET", "/v2/health/ready").status == 200


def test_a_full_queue_is_429_with_retry_after(start_server, reference):
    server = start_server(config={"model": {MODEL: {"max_batch_size": 1, "max_queue_size": 1}}}, env=slow_env(1.5))
    port = server.http_port
    results: dict[str, object] = {}

    def send(key: str, x):
        results[key] = request(port, "POST", INFER, infer_json(x))

    blocker = threading.Thread(target=send, args=("blocker", marked(1, SLOW, 1)))
    blocker.start()
    wait_until(lambda: server.metric("convnet_inflight_requests", model=MODEL) >= 1
               and server.metric("convnet_queue_depth", model=MODEL) == 0, "the blocker computing, not queued")
    waiting = threading.Thread(target=send, args=("waiting", images(1, seed=23)))
    waiting.start()
    wait_until(lambda: server.metric("convnet_queue_depth", model=MODEL) >= 1, "one request queued")
    refused = request(port, "POST", INFER, infer_json(images(1, seed=24)))
    assert refused.status == 429 and refused.headers["retry-after"] == "1"
    assert "queue full (1 images waiting, max_queue_size=1, request has 1)" in refused.error
    blocker.join(30)
    waiting.join(30)
    assert results["blocker"].status == 200 and results["waiting"].status == 200
    assert_scores(scores_of(results["waiting"]), reference(MODEL, images(1, seed=23)))
    assert server.metric("convnet_requests_total", model=MODEL, api="http", code="RESOURCE_EXHAUSTED") == 1


def test_max_concurrent_rpcs_pools_are_shared_with_grpc(start_server):
    server = start_server("--max-concurrent-rpcs", "1", env=slow_env(1.5))
    port, results = server.http_port, {}
    slow = threading.Thread(target=lambda: results.setdefault("slow", request(port, "POST", INFER,
                                                                                infer_json(marked(1, SLOW, 4)))))
    slow.start()
    wait_until(lambda: server.metric("convnet_inflight_requests", model=MODEL) >= 1, "the slow request in flight")
    refused = request(port, "POST", INFER, infer_json(images(1, seed=26)))
    assert refused.status == 429 and "max_concurrent_rpcs: expected at most 1 concurrent calls" in refused.error
    with pytest.raises(grpc.RpcError) as caught:  # the HTTP request holds the one slot gRPC's calls share
        tritonclient_stub(server).ModelMetadata(service_pb2.ModelMetadataRequest(name=MODEL), timeout=10)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert request(port, "GET", "/v2/health/ready").status == 200  # health has a pool of its own
    slow.join(30)
    assert results["slow"].status == 200
    assert request(port, "POST", INFER, infer_json(images(1, seed=26))).status == 200


def tritonclient_stub(server):
    return service_pb2_grpc.GRPCInferenceServiceStub(server.channel())


def test_a_stopping_server_answers_503_and_finishes_what_it_holds(start_server):
    server = start_server("--shutdown-grace-s", "20", "--drain-s", "0", env=slow_env(2.0))
    port = server.http_port
    results = {}
    slow = threading.Thread(target=lambda: results.setdefault("slow", request(port, "POST", INFER,
                                                                                infer_json(marked(1, SLOW, 3)))))
    slow.start()
    wait_until(lambda: server.metric("convnet_inflight_requests", model=MODEL) >= 1, "the slow request in flight")
    server.process.send_signal(signal.SIGTERM)
    wait_until(lambda: request(port, "GET", "/v2/health/ready").status == 503, "readiness 503", timeout=10)
    refused = request(port, "POST", INFER, infer_json(images(1, seed=25)))
    assert refused.status == 503 and "shutting down" in refused.error and refused.headers["retry-after"] == "1"
    model_ready = request(port, "GET", f"/v2/models/{MODEL}/ready")
    assert model_ready.status == 503 and model_ready.json()["ready"] is False
    slow.join(30)
    assert results["slow"].status == 200
    assert server.process.wait(30) == 0


def test_http_port_in_use_exits_1_saying_so(model_repo, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "service", "serve", "--models", str(model_repo), "--port", "0",
                                 "--metrics-port", "0", "--http-port", str(port)],
                                cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert result.returncode == 1 and f"cannot listen on 127.0.0.1:{port} (HTTP)" in result.stderr
