"""Finding 1 of issue 24: a flood of idle and slowloris connections to the HTTP port, with the server's
open-files limit at 1,024, neither locks out gRPC and HTTP callers (old and new connections) nor fills
the log; the slow connections are closed within the header timeout. bench/edge.py runs the flood."""
from __future__ import annotations

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
