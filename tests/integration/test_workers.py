"""``serve --workers 2``: two server processes on one gRPC and one HTTP port, under one parent.

Each test starts the real pool on free ports and talks to it as a client would: HTTP infer calls on
new connections (the kernel spreads connections over the workers), the parent's /metrics and
/health/ready on the metrics port, and each worker's own /metrics on the port that /health/ready
names. They wait on those observable states, never on sleeps.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from bench import scrape
from bench.launcher import ROOT, wait_until
from http_helpers import infer_binary, request, scores_of
from test_server_helpers import assert_scores, reply_scores, tensor

from service.generated.convnet.v1 import convnet_pb2 as pb
from service.generated.convnet.v1 import convnet_pb2_grpc

MODEL = "cifar-tiny"
SLOW = 777.0
REQUESTS = "convnet_requests_total"


def pool_health(server) -> tuple[int, dict]:
    reply = request(server.metrics_port, "GET", "/health/ready")
    return reply.status, reply.json()


def workers_of(server) -> list[dict]:
    return pool_health(server)[1]["workers"]


def worker_requests(worker: dict) -> float:
    return scrape.metric(scrape.scrape(worker["metrics_port"]), REQUESTS, model=MODEL, code="OK")


def infer(server, x: np.ndarray, version: int | None = None):
    body, headers = infer_binary(x)
    path = f"/v2/models/{MODEL}" + (f"/versions/{version}" if version else "") + "/infer"
    return request(server.http_port, "POST", path, body, headers, timeout=60)


def served_scores(server, x: np.ndarray, version: int | None = None) -> np.ndarray:
    reply = infer(server, x, version)
    assert reply.status == 200, reply.body[:300]
    return scores_of(reply)


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32)


def send(server, reference, n: int, seed: int) -> None:
    """``n`` calls of one image each, 4 at a time, each on a new connection; every answer checked."""
    x = images(n, seed)
    with ThreadPoolExecutor(4) as pool:
        served = list(pool.map(lambda i: served_scores(server, x[i:i + 1]), range(n)))
    assert_scores(np.concatenate(served), reference(MODEL, x))


@pytest.mark.slow
def test_two_workers_share_the_ports_each_serves_and_metrics_sum_them(start_server, reference, tmp_path):
    server = start_server("--workers", "2")
    status, health = pool_health(server)
    assert status == 200 and health["ready"] and health["serving"] == 2
    workers = health["workers"]
    assert [w["worker"] for w in workers] == [0, 1] and len({w["pid"] for w in workers}) == 2
    assert server.pid not in {w["pid"] for w in workers}  # a parent supervises, it serves no call
    ready = json.loads((tmp_path / "server-0" / "server.ready.json").read_text())
    assert ready["pid"] == server.pid and [(w["worker"], w["pid"]) for w in ready["workers"]] == \
        [(w["worker"], w["pid"]) for w in workers]
    for worker in workers:
        ready = f"INFO worker {worker['worker']} service.server: loading the models"
        assert ready in server.output()
    sent = 0
    while sent < 400 and not all(worker_requests(w) > 0 for w in workers):
        send(server, reference, 20, seed=sent)
        sent += 20
    per_worker = [worker_requests(w) for w in workers]
    assert all(count > 0 for count in per_worker), f"{per_worker} of {sent}: one worker took every connection"
    assert sum(per_worker) == sent
    assert scrape.metric(server.metrics_text(), REQUESTS, model=MODEL, code="OK") == sent
    images_per_worker = [scrape.metric(scrape.scrape(w["metrics_port"]), "convnet_images_total", model=MODEL)
                         for w in workers]
    assert scrape.metric(server.metrics_text(), "convnet_images_total", model=MODEL) == sum(images_per_worker) == sent
    assert scrape.metric(server.metrics_text(), "convnet_model_ready", model=MODEL) == 1  # ready in every worker
    calls = 0  # over gRPC: each channel its own connection (no shared subchannel), so one worker each
    while calls < 40 and not all(scrape.metric(scrape.scrape(w["metrics_port"]), REQUESTS, api="classify") > 0
                                 for w in workers):
        x = images(2, seed=1000 + calls)
        with grpc.insecure_channel(server.target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            reply = convnet_pb2_grpc.ClassifierStub(channel).Classify(pb.ClassifyRequest(model=MODEL, tensor=tensor(x)),
                                                                      timeout=60)
        assert_scores(reply_scores(reply), reference(MODEL, x))
        calls += 1
    assert scrape.metric(server.metrics_text(), REQUESTS, api="classify", code="OK") == calls
    assert all(scrape.metric(scrape.scrape(w["metrics_port"]), REQUESTS, api="classify") > 0 for w in workers)
    assert scrape.metric(server.metrics_text(), "convnet_pool_workers", state="serving") == 2


@pytest.mark.slow
def test_a_killed_worker_is_restarted_the_pool_keeps_serving_and_its_counts_stay(start_server, reference):
    server = start_server("--workers", "2")
    send(server, reference, 20, seed=1)
    assert scrape.metric(server.metrics_text(), REQUESTS, model=MODEL, code="OK") == 20
    killed = workers_of(server)[1]
    os.kill(killed["pid"], signal.SIGKILL)
    wait_until(lambda: workers_of(server)[1]["pid"] != killed["pid"], "the parent sees worker 1 gone")
    status, health = pool_health(server)
    assert status == 200 and health["ready"] and health["workers"][1]["state"] in ("restarting", "starting"), health
    send(server, reference, 20, seed=2)  # while worker 1 starts again: all on worker 0
    wait_until(lambda: workers_of(server)[1]["state"] == "serving", "worker 1 serving again", timeout=120)
    restarted = workers_of(server)[1]
    assert restarted["restarts"] == 1 and restarted["pid"] not in (killed["pid"], None)
    assert "worker 1 (pid %d) exited (signal SIGKILL) while serving" % killed["pid"] in server.output()
    send(server, reference, 20, seed=3)
    assert scrape.metric(server.metrics_text(), REQUESTS, model=MODEL, code="OK") == 60
    assert scrape.metric(server.metrics_text(), "convnet_pool_worker_restarts_total", worker="1") == 1


@pytest.mark.slow
def test_sigterm_drains_both_workers_without_losing_a_request_in_flight(start_server, reference):
    server = start_server("--workers", "2", env={"CONVNET_INJECT_SLOW": f"{SLOW}:1.5", "CONVNET_DRAIN_S": "0.5"})
    workers = workers_of(server)
    results: list = []
    threads: list[threading.Thread] = []

    def call(i: int) -> None:
        x = images(1, seed=100 + i)
        x[0, 0, 0, 0] = SLOW  # its batch stalls 1.5 s: it is in flight when the signal comes
        reply = infer(server, x)
        results.append((reply.status, x, scores_of(reply) if reply.status == 200 else reply.body))

    def inflight(worker: dict) -> float:
        return scrape.metric(scrape.scrape(worker["metrics_port"]), "convnet_inflight_requests", model=MODEL)

    while len(threads) < 32 and not all(inflight(w) > 0 for w in workers):
        threads.append(threading.Thread(target=call, args=(len(threads),)))
        threads[-1].start()
        wait_until(lambda: sum(inflight(w) for w in workers) + len(results) >= len(threads), "the call arrived")
    assert all(inflight(w) > 0 for w in workers), "every call went to one worker"
    server.process.send_signal(signal.SIGTERM)
    wait_until(lambda: pool_health(server)[0] == 503, "the pool not ready once stopping")
    assert pool_health(server)[1]["stopping"]
    for thread in threads:
        thread.join(60)
    assert server.process.wait(60) == 0
    assert len(results) == len(threads)
    for status, x, scores in results:
        assert status == 200, scores
        assert_scores(scores, reference(MODEL, x))
    for worker in workers:
        assert f"worker {worker['worker']} (pid {worker['pid']}): stopped (exit status 0)" in server.output()
        with pytest.raises(ProcessLookupError):
            os.kill(worker["pid"], 0)


@pytest.mark.slow
def test_sighup_reloads_every_worker_while_calls_go_on(start_server, reference, model_repo, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(model_repo / MODEL, repo / MODEL, ignore=shutil.ignore_patterns(".*"))
    server = start_server("--workers", "2", models=repo)
    workers = workers_of(server)
    done = threading.Event()
    statuses: list[int] = []

    def keep_calling() -> None:
        x = images(1, seed=7)
        while not done.is_set() and len(statuses) < 2000:
            statuses.append(infer(server, x).status)

    def version_2_ready(metrics_port: int) -> bool:
        return scrape.metric(scrape.scrape(metrics_port), "convnet_model_ready", model=MODEL, version="2") == 1

    caller = threading.Thread(target=keep_calling)
    caller.start()
    try:
        shutil.copytree(repo / MODEL / "1", repo / MODEL / "2")
        server.process.send_signal(signal.SIGHUP)
        for worker in workers:
            wait_until(lambda: version_2_ready(worker["metrics_port"]), f"worker {worker['worker']} loads version 2",
                       timeout=120)
    finally:
        done.set()
        caller.join(60)
    assert version_2_ready(server.metrics_port)  # the parent's page: ready in every worker
    assert statuses and set(statuses) == {200}, sorted(set(statuses))
    assert [w["pid"] for w in workers_of(server)] == [w["pid"] for w in workers]  # reloaded, not restarted
    x = images(4, seed=8)
    assert_scores(served_scores(server, x, version=2), reference(MODEL, x))
    assert "SIGHUP: reloading workers 0, 1" in server.output()


def _gone(pid: int) -> bool:
    """The process has exited (a zombie not yet reaped by its new parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return any(line.startswith("State:") and "Z" in line.split()[1] for line in status)
    except FileNotFoundError:
        return True


@pytest.mark.slow
def test_workers_stop_by_themselves_when_the_parent_is_killed(start_server):
    server = start_server("--workers", "2")
    workers = workers_of(server)
    server.process.kill()
    server.process.wait(10)
    for worker in workers:
        wait_until(lambda: _gone(worker["pid"]), f"worker {worker['worker']} gone after the parent", timeout=60)
    assert "the supervising parent is gone: stopping" in server.output()


def pool_serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service", "serve", "--workers", "2", "--metrics-port", "0",
                           "--http-port", "0", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_a_port_in_use_or_workers_that_cannot_start_fail_the_pool_with_exit_1_saying_why(model_repo, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = pool_serve("--models", str(model_repo), "--port", str(port))
    assert result.returncode == 1 and f"cannot listen on 127.0.0.1:{port} (gRPC)" in result.stderr
    result = pool_serve("--models", str(tmp_path / "absent"), "--port", "0")
    assert result.returncode == 1
    assert "not a directory" in result.stderr and "failed to start (exit status 1): the pool stops" in result.stderr


@pytest.mark.slow
def test_sigint_while_the_workers_start_stops_them_as_sigterm_and_the_pool_exits_0(model_repo, tmp_path):
    log_path, ready = tmp_path / "pool.log", tmp_path / "ready.json"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--workers", "2", "--models", str(model_repo), "--port", "0",
             "--http-port", "0", "--metrics-port", "0", "--ready-file", str(ready)], cwd=ROOT, stdout=log,
            stderr=subprocess.STDOUT, env={**os.environ, "CONVNET_INJECT_SLOW_LOAD": "2", "PYTHONUNBUFFERED": "1"})
    try:
        wait_until(lambda: log_path.read_text().count("TEST HOOK CONVNET_INJECT_SLOW_LOAD") == 2,
                   "both workers loading", timeout=120, process=process, log=log_path)
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0, log_path.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
    output = log_path.read_text()
    assert not ready.exists()
    for index in (0, 1):
        assert f"INFO worker {index} service.server: SIGTERM: stopping" in output
        assert f"worker {index} (pid " in output and "): stopped (exit status 0)" in output


@pytest.mark.slow
def test_a_hang_up_that_reaches_a_worker_as_it_starts_does_not_kill_it(model_repo, tmp_path):
    log_path, ready = tmp_path / "pool.log", tmp_path / "ready.json"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--workers", "2", "--models", str(model_repo), "--port", "0",
             "--http-port", "0", "--metrics-port", "0", "--ready-file", str(ready)], cwd=ROOT, stdout=log,
            stderr=subprocess.STDOUT, env={**os.environ, "CONVNET_DRAIN_S": "0", "PYTHONUNBUFFERED": "1"})
    try:
        started = wait_until(lambda: re.search(r"worker 1: started, pid (\d+)", log_path.read_text()),
                             "worker 1 started", timeout=60, process=process, log=log_path)
        worker_pid = int(started.group(1))
        os.kill(worker_pid, signal.SIGHUP)  # long before its imports are done
        info = wait_until(lambda: ready.exists() and json.loads(ready.read_text()), "the pool ready", timeout=120,
                          process=process, log=log_path)
        assert info["workers"][1]["pid"] == worker_pid and info["workers"][1]["restarts"] == 0
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
