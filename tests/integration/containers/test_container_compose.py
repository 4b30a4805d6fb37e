"""The real docker-compose.yml, profile `scale`, started by Debian's docker-compose 1.29 through
podman's Docker-compatible API: 3 replicas of the service image behind the HAProxy load balancer,
and Prometheus.

Substituted, in this test only: haproxy:2.6 and prom/prometheus cannot be pulled (no registry), so
compose.override.yml runs the same programs from Debian's packages (Dockerfile.debian-tools:
HAProxy 2.6, as the image) with the repository's own configuration. Grafana has no Debian package
and is not started; its provisioning is checked by test_deploy_files.py.

Rolling restart, as docs/DEPLOY.md tells an operator to do it: `bash deploy/rolling-restart.sh`
(here with COMPOSE = docker-compose 1.29 and DOCKER = podman), which restarts one replica at a
time (SIGTERM, the server's drain, start) and waits until HAProxy sends it calls again; all under a
steady closed-loop load through the load balancer, by clients that do not retry. HAProxy checks each replica's /v2/health/ready every second, which answers 503 from the
first moment of the drain, so it sends the stopping replica no new call while the replica still
serves the ones it has: every call must succeed. The attempts HAProxy logged as not answered 200,
or retried, are printed.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import pytest

from container_engine import HERE, ROOT, engine_env, free_port, healthy, podman, unique, wait_for
from service.generated.convnet.v1 import convnet_pb2 as pb
from service.generated.convnet.v1 import convnet_pb2_grpc
from tritonclient.grpc import service_pb2 as kserve  # not service.generated.inference: same symbols
from tritonclient.grpc import service_pb2_grpc as kserve_grpc

pytestmark = [pytest.mark.slow, pytest.mark.container, pytest.mark.timeout(900)]
REPLICAS = 3
MODEL = "cifar-tiny"


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=5)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(5)
        self.sock.connect(self.path)


def docker_api_answers(sock: Path) -> bool:
    conn = UnixHTTPConnection(str(sock))
    try:
        conn.request("GET", "/_ping")
        return conn.getresponse().read() == b"OK"
    finally:
        conn.close()


def replica_requests(container: str) -> float:
    """Requests the replica answered OK, read from its own /metrics inside the container."""
    script = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8002/metrics').read().decode())"
    text = podman("exec", container, "python", "-c", script, timeout=30).stdout
    return sum(float(v) for v in re.findall(r'^convnet_requests_total\{[^}]*code="OK"[^}]*\} (\S+)$', text, re.M))


def started_at(container: str) -> str:
    return podman("inspect", "-f", "{{.State.StartedAt}}", container).stdout.strip()


def container_ip(container: str) -> str:
    (inspected,) = json.loads(podman("inspect", container).stdout)
    return next(n["IPAddress"] for n in inspected["NetworkSettings"]["Networks"].values())


class Client:
    """Calls through the load balancer, alternating the own API and KServe v2, without retries."""

    def __init__(self, target: str):
        self.channel = grpc.insecure_channel(target, options=[("grpc.enable_retries", 0)])
        self.own = convnet_pb2_grpc.ClassifierStub(self.channel)
        self.kserve = kserve_grpc.GRPCInferenceServiceStub(self.channel)
        self.x = np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype(np.float32)
        self.calls = 0

    def call(self) -> str:
        """One call; its status code name (OK when the answer is also well formed)."""
        self.calls += 1
        data = np.ascontiguousarray(self.x, "<f4").tobytes()
        try:
            if self.calls % 2:
                reply = self.own.Classify(pb.ClassifyRequest(model=MODEL, tensor=pb.Tensor(shape=self.x.shape, data=data)),
                                          timeout=15)
                return "OK" if len(reply.results) == 1 and reply.results[0].top else "BAD_REPLY"
            request = kserve.ModelInferRequest(model_name=MODEL, raw_input_contents=[data])
            request.inputs.add(name="input", datatype="FP32", shape=self.x.shape)
            reply = self.kserve.ModelInfer(request, timeout=15)
            return "OK" if len(reply.raw_output_contents) == 1 else "BAD_REPLY"
        except grpc.RpcError as err:
            return err.code().name

    def close(self):
        self.channel.close()


@pytest.fixture(scope="module")
def stack(convnet_image, tools_image, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compose")
    sock = tmp / "podman.sock"
    service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"], env=engine_env(),
                               stdout=subprocess.DEVNULL, stderr=(tmp / "podman-service.log").open("w"),
                               start_new_session=True)
    project = unique("convnet-it").replace("-", "")
    env = {**engine_env(), "DOCKER_HOST": f"unix://{sock}", "COMPOSE_PROJECT_NAME": project,
           "CONVNET_IMAGE": convnet_image["name"], "CONVNET_TEST_TOOLS_IMAGE": tools_image,
           "CONVNET_LB_PORT": str(free_port()), "CONVNET_LB_HTTP_PORT": str(free_port()),
           "CONVNET_LB_STATS_PORT": str(free_port()), "PROMETHEUS_PORT": str(free_port())}
    compose = ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "-f", str(HERE / "compose.override.yml"),
               "--profile", "scale"]

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        done = subprocess.run([*compose, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"docker-compose {' '.join(args)}: {done.stderr[-4000:]}"
        return done

    try:
        wait_for(lambda: docker_api_answers(sock), 30, "podman's Docker API on " + str(sock))
        start = time.monotonic()
        run("up", "-d", "convnet-replica", "lb", "prometheus")
        replicas = sorted(podman("ps", "-q", "--filter", f"label=com.docker.compose.project={project}",
                                 "--filter", "label=com.docker.compose.service=convnet-replica").stdout.split())
        assert len(replicas) == REPLICAS, replicas
        (lb,) = podman("ps", "-q", "--filter", f"label=com.docker.compose.project={project}",
                       "--filter", "label=com.docker.compose.service=lb").stdout.split()
        for replica in replicas:
            wait_for(lambda: healthy(replica), 180, f"replica {replica} healthy")
        target = f"127.0.0.1:{env['CONVNET_LB_PORT']}"
        client = Client(target)
        wait_for(lambda: client.call() == "OK", 60, "a call through the load balancer")
        client.close()
        ready_s = time.monotonic() - start
        print(f"compose up -> 3 replicas healthy and served through the load balancer: {ready_s:.1f} s")
        yield {"project": project, "replicas": replicas, "lb": lb, "target": target, "ready_s": ready_s,
               "prometheus": f"http://127.0.0.1:{env['PROMETHEUS_PORT']}", "env": env, "compose": compose}
    finally:
        try:
            subprocess.run([*compose, "down", "-v", "--remove-orphans", "-t", "10"], env=env, cwd=ROOT,
                           capture_output=True, timeout=180)
        finally:
            left = podman("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}", check=False).stdout.split()
            if left:
                podman("rm", "-f", "-t", "0", *left, check=False)
            os.killpg(service.pid, signal.SIGTERM)
            try:
                service.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(service.pid, signal.SIGKILL)
                service.wait(timeout=10)


def test_load_balancer_reaches_every_replica(stack):
    before = {r: replica_requests(r) for r in stack["replicas"]}
    client = Client(stack["target"])
    codes = Counter(client.call() for _ in range(30))
    client.close()
    assert codes == {"OK": 30}
    served = {r: replica_requests(r) - before[r] for r in stack["replicas"]}
    assert sum(served.values()) == 30 and all(n > 0 for n in served.values()), served


HAPROXY_LOG = re.compile(r"\] \S+ \S+ [-+\d]+/[-+\d]+/[-+\d]+/[-+\d]+/\+?[-\d]+ (-?\d+) .* "
                         r"\d+/\d+/\d+/\d+/(\+?\d+) ")


def lb_failures(lb: str) -> list[str]:
    """HAProxy's log lines (`option httplog`) of requests not answered 200 or retried on another
    replica: which replica answered what, to tell where a failure came from. (A gRPC error is a
    200 with grpc-status in the trailers: the client counts those.)"""
    log = podman("logs", lb, check=False).stdout.splitlines()
    found = [(line, HAPROXY_LOG.search(line)) for line in log]
    return [line for line, m in found if m and (m.group(1) != "200" or m.group(2) not in ("0", "+0"))]


def prometheus_up(base: str) -> dict[str, str]:
    query = urllib.parse.urlencode({"query": 'up{job="convnet"}'})
    reply = json.load(urllib.request.urlopen(f"{base}/api/v1/query?{query}", timeout=5))
    return {r["metric"]["instance"]: r["value"][1] for r in reply["data"]["result"]}


def test_prometheus_scrapes_every_replica(stack):
    want = {f"{container_ip(r)}:8002": "1" for r in stack["replicas"]}
    assert wait_for(lambda: prometheus_up(stack["prometheus"]) == want and want, 90,
                    f"Prometheus to scrape {sorted(want)} with up == 1")


def test_rolling_restart_loses_no_request(stack):
    stop = threading.Event()
    codes: Counter = Counter()
    lock = threading.Lock()

    def load():
        client = Client(stack["target"])
        while not stop.is_set():
            code = client.call()
            with lock:
                codes[code] += 1
            stop.wait(0.02)  # bounded load: at most ~50 calls/s per worker
        client.close()

    workers = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        wait_for(lambda: sum(codes.values()) >= 20, 60, "the load to run")
        with lock:
            at_start = sum(codes.values())
        started = {r: started_at(r) for r in stack["replicas"]}
        env = {**stack["env"], "COMPOSE": " ".join(stack["compose"]), "DOCKER": "podman"}
        done = subprocess.run(["bash", str(ROOT / "deploy" / "rolling-restart.sh")], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.count("restarted and serving") == REPLICAS, done.stdout
        for replica in stack["replicas"]:
            assert started_at(replica) != started[replica], f"{replica} was not restarted"
            wait_for(lambda: replica_requests(replica) > 0, 60, f"restarted replica {replica} to take calls")
        with lock:
            assert sum(codes.values()) > at_start, "the load went on during the restart"
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=30)
    print(f"rolling restart of {REPLICAS} replicas under load, clients without retries: {dict(codes)}")
    failed = lb_failures(stack["lb"])
    print(f"load balancer log, requests not answered 200 or retried: {len(failed)}", *failed[:40], sep="\n  ")
    assert set(codes) == {"OK"}, (dict(codes), failed[:40])
    assert codes["OK"] >= 100
