"""A rolling restart behind the real HAProxy (deploy/haproxy/haproxy.cfg rendered for loopback)
loses no call: three replicas, with the production drain (2 s), are restarted one at a time, plain
SIGTERM then start, while four clients call through HAProxy without pause over the project's
gRPC API, KServe v2 gRPC and KServe v2 HTTP, with no retry of their own. HAProxy reads each
replica's /v2/health/ready every second, which answers 503 from the first moment of the drain,
so it sends a stopping replica nothing new while the replica still serves what it has, and a
restarted one calls again once it is up. Every call must succeed."""
from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
import tritonclient.grpc as triton
from http_helpers import infer_binary, request
from test_server_helpers import images

from bench import loopback
from bench.launcher import launch_server, wait_until
from service import client
from service.generated.convnet.v1 import convnet_pb2 as pb

pytestmark = pytest.mark.slow  # three servers restarted in turn under load

MODEL = "cifar-tiny"
REPLICAS = 3
CLIENTS = 4
PACE_S = 0.02
"""Pause between one client's calls: at most 50 calls/s each, so the 2-core machine keeps up."""


class Calls:
    """Every call's outcome, from the client threads."""

    def __init__(self):
        self.ok: dict[str, int] = {}
        self.failed: list[tuple[str, str]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def record(self, api: str, error: str = "") -> None:
        with self.lock:
            if error:
                self.failed.append((api, error))
            else:
                self.ok[api] = self.ok.get(api, 0) + 1


def call_forever(balancer: loopback.Balancer, seed: int, calls: Calls) -> None:
    """Alternate the three APIs through the balancer until told to stop; no retries."""
    x = images(1 + seed % 2, seed=seed)
    stub = client.connect(balancer.grpc)
    http_port = int(balancer.http.rsplit(":", 1)[1])
    kserve_input = triton.InferInput("input", list(x.shape), "FP32")
    kserve_input.set_data_from_numpy(x)
    with triton.InferenceServerClient(balancer.grpc) as kserve:
        for i in range(1_000_000):
            if calls.stop.is_set():
                return
            api = ("classify", "kserve-grpc", "kserve-http")[i % 3]
            try:
                if api == "classify":
                    reply = stub.Classify(pb.ClassifyRequest(model=MODEL, tensor=client.tensor_message(x)), timeout=30)
                    error = "" if len(reply.results) == len(x) else f"{len(reply.results)} results"
                elif api == "kserve-grpc":
                    scores = kserve.infer(MODEL, [kserve_input], client_timeout=30).as_numpy("scores")
                    error = "" if scores.shape == (len(x), 10) else f"scores {scores.shape}"
                else:
                    reply = request(http_port, "POST", f"/v2/models/{MODEL}/infer", *infer_binary(x))
                    error = "" if reply.status == 200 else f"HTTP {reply.status}: {reply.error}"
            except Exception as exc:  # any failure is the test's finding, whatever its type
                error = f"{type(exc).__name__}: {exc}"
            calls.record(api, error)
            time.sleep(PACE_S)


def served(server) -> float:
    return server.metric("convnet_requests_total", model=MODEL, code="OK")


def test_restarting_every_replica_in_turn_under_load_fails_no_call(model_repo, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(Path(model_repo) / MODEL, repo / MODEL)
    ports = [{"--port": loopback.free_port(), "--http-port": loopback.free_port(),
              "--metrics-port": loopback.free_port()} for _ in range(REPLICAS)]

    def start(i: int, generation: int):
        flags = [str(v) for pair in ports[i].items() for v in pair]
        return launch_server(tmp_path / f"replica{i}", *flags, models=repo, name=f"replica{i}-{generation}")

    replicas = [start(i, 0) for i in range(REPLICAS)]
    behind = [loopback.Replica(r.target, f"127.0.0.1:{r.http_port}") for r in replicas]
    calls = Calls()
    began = time.monotonic()
    try:
        with loopback.haproxy(behind, tmp_path / "haproxy") as balancer:
            threads = [threading.Thread(target=call_forever, args=(balancer, seed, calls)) for seed in range(CLIENTS)]
            for t in threads:
                t.start()
            try:
                for r in replicas:
                    wait_until(lambda: served(r) >= 5, "every replica takes calls", timeout=60)
                for i in range(REPLICAS):
                    assert replicas[i].stop() == 0, replicas[i].output()[-3000:]
                    replicas[i] = start(i, 1)
                    wait_until(lambda: {balancer.servers()[b, f"replica{i + 1}"] for b in ("grpc_replicas",
                                                                                          "http_replicas")} == {"UP"},
                               f"haproxy: replica{i + 1} UP again", timeout=60)
                    wait_until(lambda: served(replicas[i]) >= 5, f"replica{i + 1} takes calls again", timeout=60)
            finally:
                calls.stop.set()
                for t in threads:
                    t.join(60)
    finally:
        for r in replicas:
            r.stop()
    total = sum(calls.ok.values()) + len(calls.failed)
    print(f"rolling restart behind HAProxy: {REPLICAS} restarts in {time.monotonic() - began:.0f} s, "
          f"{total} calls ({calls.ok}), {len(calls.failed)} failed")
    assert calls.failed == []
    assert min(calls.ok.get(api, 0) for api in ("classify", "kserve-grpc", "kserve-http")) >= 30, calls.ok
