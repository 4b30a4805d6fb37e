"""Finding 1 of issue 24: a flood of idle and slowloris connections to the HTTP port, with the server's
open-files limit at 1,024, neither locks out gRPC and HTTP callers (old and new connections) nor fills
the log; the slow connections are closed within the header timeout. bench/edge.py runs the flood."""
from __future__ import annotations

import socket
import time

import pytest

from bench.edge import flood
from bench.launcher import ROOT

HEADER_TIMEOUT_S = 3.0


@pytest.mark.slow
def test_1100_idle_and_100_slowloris_connections_leave_both_apis_served(tmp_path):
    figures = flood(ROOT, tmp_path, 1100, 100, "--http-header-timeout-s", str(HEADER_TIMEOUT_S))
    for call in ("kept HTTP connection, infer (s)", "new HTTP connection, infer (s)",
                 "kept gRPC channel, ModelInfer (s)", "new gRPC channel, ModelInfer (s)"):
        assert isinstance(figures[call], float) and figures[call] < 2.0, (call, figures)
    assert figures["slow connections closed (of 100)"] == 100, figures
    assert figures["slowest close of a slow connection (s after connect)"] <= HEADER_TIMEOUT_S + 1.5, figures
    assert figures["log lines during the flood"] <= 20, figures


@pytest.mark.slow
def test_grpc_and_metrics_ports_close_a_connection_that_never_speaks(start_server):
    """The gRPC port closes a connection that sends no HTTP/2 preface after ``grpc_handshake_timeout_s``
    (gRPC core's handshake deadline), the metrics port one that sends no request head after
    ``http_header_timeout_s``; a scrape is still answered."""
    server = start_server("--http-header-timeout-s", "1",
                          env={"CONVNET_GRPC_HANDSHAKE_TIMEOUT_S": "1", "CONVNET_GRPC_MAX_CONNECTIONS": "50"})
    for port in (server.port, server.metrics_port):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(10)
            started = time.monotonic()
            while sock.recv(1024):  # gRPC sends its SETTINGS frame first; then the close
                pass
            assert time.monotonic() - started < 5, f"port {port} kept a silent connection open"
    assert "convnet_requests_total" in server.metrics_text()
    assert "at most" in server.output() and "50 gRPC" in server.output()
