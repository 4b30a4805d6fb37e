"""The Grafana dashboard shows HTTP traffic as an API of its own: a real Prometheus, configured by
deploy/prometheus.yml, scrapes a server that answered HTTP requests, and the throughput
panel's per-API query (read from the dashboard JSON) gives an ``http`` series."""
from __future__ import annotations

import time

import numpy as np
import pytest
from http_helpers import MODEL, infer_binary, request

from bench import loopback
from bench.launcher import wait_until

pytestmark = pytest.mark.slow  # a real Prometheus scraping for a few seconds

HTTP_REQUESTS = 40


def scraped_total(url: str, api: str) -> float:
    result = loopback.prometheus_api(url, "query", query=f'sum(convnet_requests_total{{model="{MODEL}", api="{api}"}})')
    return float(result["result"][0]["value"][1]) if result["result"] else -1.0


def test_requests_per_second_are_split_by_api_with_http_among_them(server, tmp_path):
    x = np.zeros((1, 3, 32, 32), np.float32)
    assert request(server.http_port, "POST", f"/v2/models/{MODEL}/infer", *infer_binary(x)).status == 200
    with loopback.prometheus([f"127.0.0.1:{server.metrics_port}"], tmp_path / "prometheus") as url:
        start = time.time()
        before = server.metric("convnet_requests_total", model=MODEL, api="http")
        wait_until(lambda: scraped_total(url, "http") >= before, "a first scrape", timeout=120)
        for _ in range(HTTP_REQUESTS):
            assert request(server.http_port, "POST", f"/v2/models/{MODEL}/infer", *infer_binary(x)).status == 200
        wait_until(lambda: scraped_total(url, "http") >= before + HTTP_REQUESTS, "a scrape of the HTTP requests",
                   timeout=120)
        window = int(time.time() - start) + 5
        queries = loopback.dashboard_queries({"__rate_interval": f"{window}s", "model": MODEL, "api": ".*"})
        (split,) = [q for q in queries if q["legend"] == "requests/s {{api}}"]
        result = loopback.prometheus_api(url, "query", query=split["expr"])["result"]
    rates = {series["metric"]["api"]: float(series["value"][1]) for series in result}
    assert rates.get("http", 0) > 0, rates
