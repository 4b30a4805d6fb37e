"""The real Prometheus server, configured by deploy/prometheus.yml (rendered for loopback), scrapes
a real server under load, and every PromQL query of the Grafana dashboard answers sane data.

The dashboard's queries are read from deploy/grafana/dashboards/convnet.json with the Grafana
variables replaced, so this checks what Grafana would run. Values are compared with the server's
own /metrics and with the load that was sent.
"""
from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from bench import loopback
from bench.launcher import wait_until
from service import client
from service.generated.convnet.v1 import convnet_pb2 as pb

pytestmark = pytest.mark.slow  # a real Prometheus scraping for several seconds

MODEL = "cifar-tiny"
REQUESTS = 240          # valid requests, 1..4 images each
BAD_REQUESTS = 12       # wrong tensor shape: INVALID_ARGUMENT
THREADS = 8
LOAD_SECONDS = 5.0     # several 1s scrapes see the counters grow


def send_load(target: str, seconds: float) -> tuple[int, int, int]:
    """REQUESTS valid and BAD_REQUESTS invalid Classify calls from a thread pool, paced evenly over
    `seconds` so that several scrapes see the counters grow; returns (valid requests answered,
    images in them, INVALID_ARGUMENT answers)."""
    stub = client.connect(target)
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 5, REQUESTS)
    start = time.monotonic()

    def at_slot(i: int, total: int) -> None:
        time.sleep(max(0.0, start + seconds * i / total - time.monotonic()))

    def valid(i: int) -> int:
        at_slot(i, REQUESTS)
        x = rng.standard_normal((sizes[i], 3, 32, 32)).astype(np.float32)
        reply = stub.Classify(pb.ClassifyRequest(model=MODEL, tensor=client.tensor_message(x)), timeout=30)
        return len(reply.results)

    def invalid(i: int) -> str:
        at_slot(i, BAD_REQUESTS)
        x = np.zeros((1, 3, 8, 8), np.float32)
        try:
            stub.Classify(pb.ClassifyRequest(model=MODEL, tensor=client.tensor_message(x)), timeout=30)
        except grpc.RpcError as err:
            return err.code().name
        return "OK"

    with ThreadPoolExecutor(THREADS) as pool:
        bad = pool.submit(lambda: list(map(invalid, range(BAD_REQUESTS))))
        images = list(pool.map(valid, range(REQUESTS)))
        codes = bad.result()
    assert images == list(sizes)
    assert codes == ["INVALID_ARGUMENT"] * BAD_REQUESTS
    return len(images), int(sizes.sum()), len(codes)


def query(url: str, expr: str, at: float) -> list[dict]:
    data = loopback.prometheus_api(url, "query", query=expr, time=f"{at:.3f}")
    assert data["resultType"] == "vector", (expr, data["resultType"])
    return data["result"]


def values(result: list[dict]) -> list[float]:
    return [float(sample["value"][1]) for sample in result]


def wait_for_scrape_of(url: str, expr: str, want: float, timeout: float = 30) -> float:
    """Poll until Prometheus' latest value of `expr` equals `want` (the server's own count)."""
    wait_until(lambda: values(query(url, expr, time.time())) == [want], f"Prometheus to scrape {expr} == {want}",
               timeout=timeout)
    return time.time()


@pytest.fixture
def loaded(start_server, tmp_path):
    """A server that served the load, a Prometheus that scraped all of it, and the numbers."""
    server = start_server()
    target = f"127.0.0.1:{server.metrics_port}"
    with loopback.prometheus([target], tmp_path / "prometheus", scrape_interval="1s") as url:
        wait_until(lambda: any(target in u for u in loopback.targets_up(url)), "the first scrape of the server",
                   timeout=30)
        start = time.time()
        requests, images, bad = send_load(server.target, LOAD_SECONDS)
        served = server.metric("convnet_images_total", model=MODEL)
        assert served == images
        at = wait_for_scrape_of(url, f'sum(convnet_images_total{{model="{MODEL}"}})', served)
        # The 1s recording rules evaluate on the final scrape too.
        wait_until(lambda: loopback.rules_evaluated_after(url, at), "the rules evaluated after the last scrape")
        at = time.time()
        yield {"server": server, "url": url, "target": target, "requests": requests, "images": images,
               "bad": bad, "window": math.ceil(at - start) + 3, "at": at}


def test_every_dashboard_query_returns_sane_data(loaded):
    url, at, window = loaded["url"], loaded["at"], loaded["window"]
    queries = loopback.dashboard_queries({"__rate_interval": f"{window}s", "model": MODEL, "api": ".*"})
    assert len(queries) >= 15
    results = {}
    for q in queries:
        result = query(url, q["expr"], at)
        assert result, f"no data: {q['panel']} / {q['legend'] or q['ref']}: {q['expr']}"
        assert all(math.isfinite(v) and v >= 0 for v in values(result)), (q, result)
        results[(q["panel"], q["legend"] or q["ref"])] = result

    def one(panel: str, legend: str) -> float:
        [value] = values(results[(panel, legend)])
        return value

    latency = "Request latency p50 / p95 / p99"
    p50, p95, p99 = (one(latency, p) for p in ("p50", "p95", "p99"))
    assert 0 < p50 <= p95 <= p99 <= 10

    throughput = "Throughput: requests/s and images/s"
    requests_per_s, images_per_s = one(throughput, "requests/s"), one(throughput, "images/s")
    assert images_per_s > 0 and requests_per_s > 0
    # The rate over the window, times the window, recovers the counts sent (extrapolation: 25%).
    assert images_per_s * window == pytest.approx(loaded["images"], rel=0.25)
    assert requests_per_s * window == pytest.approx(loaded["requests"] + loaded["bad"], rel=0.25)

    mean_batch = one("Mean batch size (images / batches)", "images per batch")
    assert 1 <= mean_batch <= 64
    batches = loaded["server"].metric("convnet_batches_total", model=MODEL)
    assert mean_batch == pytest.approx(loaded["images"] / batches, rel=0.25)

    buckets = {float(s["metric"]["le"]): float(s["value"][1]) for s in results[("Batch size distribution", "{{le}}")]}
    assert sorted(buckets) == [2.0 ** i for i in range(10)] + [math.inf]
    assert buckets[math.inf] == pytest.approx(batches, rel=0.25)

    wait_vs_compute = "Queue wait vs compute time (p50 / p99)"
    assert 0 < one(wait_vs_compute, "queue wait p50") <= one(wait_vs_compute, "queue wait p99")
    assert 0 < one(wait_vs_compute, "compute p50") <= one(wait_vs_compute, "compute p99")

    depth = "Queue depth and in-flight requests"
    assert one(depth, "images queued") == 0 and one(depth, "requests in flight") == 0  # load is over

    errors = results[("Errors/s by status code", "{{code}}")]
    assert [s["metric"]["code"] for s in errors] == ["INVALID_ARGUMENT"]
    ratio = one("Error ratio", "errors / requests")
    assert ratio == pytest.approx(loaded["bad"] / (loaded["requests"] + loaded["bad"]), abs=0.02)

    per_replica = results[("Requests/s per replica", "{{instance}}")]
    assert [s["metric"]["instance"] for s in per_replica] == [loaded["target"]]

    ready = results[("Loaded models", "A")]
    assert [(s["metric"]["model"], s["value"][1]) for s in ready] == [(MODEL, "1")]
    [info] = results[("Loaded models", "B")]
    assert "CPUExecutionProvider" in info["metric"]["providers"] and int(info["metric"]["max_batch_size"]) >= 1

    # The recording rules of deploy/prometheus/rules.yml, evaluated by the same server.
    for name in ("p50_1m", "p95_1m", "p99_1m"):
        [p] = values(query(url, f'model:convnet_request_duration_seconds:{name}{{model="{MODEL}"}}', at))
        assert 0 < p <= 10
    [images] = values(query(url, f'model:convnet_images:rate1m{{model="{MODEL}"}}', at))
    assert images > 0
    [mean_batch] = values(query(url, f'model:convnet_batch_size:mean_1m{{model="{MODEL}"}}', at))
    assert mean_batch >= 1
    [ratio] = values(query(url, f'model:convnet_request_errors:ratio_1m{{model="{MODEL}"}}', at))
    assert 0 < ratio < 0.2

    # A query Prometheus cannot parse is an error, not an empty answer.
    with pytest.raises(Exception, match="bad_data"):
        query(url, "sum(rate(convnet_images_total[", at)
