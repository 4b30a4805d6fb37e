"""The pool's logic without processes: the restart back-off, the port reservation, the workers
setting, and how the parent's /metrics combines the workers' expositions (service.pool_metrics)."""
from __future__ import annotations

import socket

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.config import ConfigError, load_config
from service.pool_metrics import PoolMetrics, render
from service.workers import RESTART_MAX_S, RESTART_MIN_S, PoolError, reserve_port, restart_delay, worker_config


def test_restart_is_immediate_after_serving_then_doubles_per_failed_start_up_to_the_cap():
    assert restart_delay(0) == 0.0
    delays = [restart_delay(n) for n in range(1, 12)]
    assert delays[0] == RESTART_MIN_S
    for before, after in zip(delays, delays[1:]):
        assert after == min(RESTART_MAX_S, 2 * before)
    assert delays[-1] == RESTART_MAX_S


def test_workers_setting_from_flag_environment_its_bounds_and_no_model_control_with_several():
    assert load_config(environ={}).workers == 1
    assert load_config(environ={"CONVNET_WORKERS": "3"}).workers == 3
    assert load_config(flags={"workers": 2}, environ={"CONVNET_WORKERS": "3"}).workers == 2
    with pytest.raises(ConfigError, match=r"workers: expected an integer >= 1 .*got 0"):
        load_config(flags={"workers": 0}, environ={})
    with pytest.raises(ConfigError, match=r"model_control: expected none with workers > 1 .*got 'explicit'"):
        load_config(flags={"workers": 2, "model_control": "explicit"}, environ={})
    assert load_config(flags={"workers": 1, "model_control": "explicit"}, environ={}).model_control == "explicit"


def test_each_worker_gets_the_pool_ports_its_own_metrics_port_and_a_share_of_the_cores():
    pool = load_config(flags={"workers": 2, "port": 0, "http_port": 0}, environ={})
    worker = worker_config(pool, 5001, 5000, cores=8)
    assert (worker.workers, worker.port, worker.http_port, worker.metrics_port) == (1, 5001, 5000, 0)
    assert worker.intra_op_threads == 4
    assert worker_config(load_config(flags={"workers": 3}, environ={}), 1, 2, cores=2).intra_op_threads == 1
    chosen = load_config(flags={"workers": 2, "intra_op_threads": 3}, environ={})
    assert worker_config(chosen, 1, 2, cores=8).intra_op_threads == 3


def _listening_port() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock, sock.getsockname()[1]


def test_reserved_port_is_shared_by_reuse_port_listeners_only():
    reserved, port = reserve_port("127.0.0.1", 0, "gRPC")
    try:
        assert port > 0
        worker = socket.socket()
        worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        worker.bind(("127.0.0.1", port))  # a worker joins the reserved port
        worker.close()
        stranger = socket.socket()
        with pytest.raises(OSError):  # a process without SO_REUSEPORT cannot take it
            stranger.bind(("127.0.0.1", port))
        stranger.close()
    finally:
        for sock in reserved:
            sock.close()


def test_a_port_another_process_listens_on_is_refused_with_its_name():
    listener, port = _listening_port()
    try:
        with pytest.raises(PoolError, match=rf"cannot listen on 127.0.0.1:{port} \(HTTP\)"):
            reserve_port("127.0.0.1", port, "HTTP")
    finally:
        listener.close()


def _worker_exposition(requests: int, ready: bool, inflight: int, batch: float) -> str:
    """What one worker's /metrics says, written by prometheus_client as service.metrics does."""
    r = CollectorRegistry()
    Counter("convnet_requests_total", "Requests.", ["model", "code"], registry=r).labels("m", "OK").inc(requests)
    Gauge("convnet_model_ready", "Ready.", ["model", "version"], registry=r).labels("m", "1").set(int(ready))
    Gauge("convnet_inflight_requests", "In flight.", ["model"], registry=r).labels("m").set(inflight)
    Histogram("convnet_batch_size", "Batch.", ["model"], buckets=(1, 8), registry=r).labels("m").observe(batch)
    Info("convnet_model", "Info.", ["model"], registry=r).labels("m").info({"providers": "cpu"})
    return generate_latest(r).decode()


def _samples(text: str) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_pool_metrics_sum_counters_histograms_and_gauges_ready_only_where_every_worker_is():
    pool = PoolMetrics()
    pool.scraped(10, _worker_exposition(requests=3, ready=True, inflight=2, batch=1))
    pool.scraped(11, _worker_exposition(requests=5, ready=False, inflight=1, batch=4))
    got = _samples(render(pool.families([10, 11])).decode())
    assert got[("convnet_requests_total", (("code", "OK"), ("model", "m")))] == 3 + 5
    assert got[("convnet_inflight_requests", (("model", "m"),))] == 2 + 1
    assert got[("convnet_batch_size_count", (("model", "m"),))] == 2
    assert got[("convnet_batch_size_sum", (("model", "m"),))] == 1 + 4
    assert got[("convnet_batch_size_bucket", (("le", "1.0"), ("model", "m")))] == 1
    assert got[("convnet_batch_size_bucket", (("le", "8.0"), ("model", "m")))] == 2
    assert got[("convnet_model_ready", (("model", "m"), ("version", "1")))] == 0  # not ready in worker 11
    assert got[("convnet_model_info", (("model", "m"), ("providers", "cpu")))] == 1
    assert not [key for key in got if key[0].endswith("_created")]


def test_an_exited_worker_keeps_its_counts_but_not_its_gauges():
    pool = PoolMetrics()
    pool.scraped(10, _worker_exposition(requests=3, ready=True, inflight=2, batch=1))
    pool.scraped(11, _worker_exposition(requests=5, ready=True, inflight=1, batch=4))
    pool.exited(11)
    pool.scraped(12, _worker_exposition(requests=7, ready=True, inflight=4, batch=1))  # worker 1 again
    got = _samples(render(pool.families([10, 12])).decode())
    assert got[("convnet_requests_total", (("code", "OK"), ("model", "m")))] == 3 + 5 + 7
    assert got[("convnet_batch_size_count", (("model", "m"),))] == 3
    assert got[("convnet_inflight_requests", (("model", "m"),))] == 2 + 4
    assert got[("convnet_model_ready", (("model", "m"), ("version", "1")))] == 1
