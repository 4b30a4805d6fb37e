"""Who can reach a live server: loopback by default, another address only when chosen; TLS and
mutual TLS with a throwaway CA; a bearer token on every RPC but health."""
from __future__ import annotations

import signal
import socket
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from test_server_helpers import assert_scores, images, reply_scores, tensor
from throwaway_ca import ThrowawayCA
from tritonclient.grpc import service_pb2, service_pb2_grpc

from bench.launcher import launch_server
from service.generated.convnet.v1 import convnet_pb2 as pb
from service.generated.convnet.v1 import convnet_pb2_grpc

MODEL = "cifar-tiny"


def listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket ``pid`` listens on, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, size in (("tcp", 4), ("tcp6", 16)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            words = b"".join(raw[i:i + 4][::-1] for i in range(0, size, 4))
            host = socket.inet_ntop(socket.AF_INET if size == 4 else socket.AF_INET6, words)
            found.add((host.removeprefix("::ffff:"), int(port, 16)))  # an IPv4-mapped IPv6 socket is the IPv4 address
    return found


def test_listens_on_loopback_only_by_default(start_server):
    server = start_server()
    assert listening(server.process.pid) == {("127.0.0.1", server.port), ("127.0.0.1", server.metrics_port),
                                             ("127.0.0.1", server.http_port)}


def test_another_address_is_an_explicit_choice(bare_server):
    process, port = bare_server("--host", "127.0.0.2")
    bound = listening(process.pid)
    assert {host for host, _ in bound} == {"127.0.0.2"} and ("127.0.0.2", port) in bound and len(bound) == 3
    with grpc.insecure_channel(f"127.0.0.2:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
def bare_server(model_repo, tmp_path):
    """Start ``python -m service serve`` with extra flags, without the fixtures' plaintext health probe."""
    started = []

    def start(*args: str, env: dict | None = None):
        server = launch_server(tmp_path / f"s{len(started)}", *args, models=model_repo, env=env, health=False)
        started.append(server.process)
        return server.process, server.port

    yield start
    for process in started:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0


def classify(channel: grpc.Channel, metadata=None):
    x = images(2, seed=42)
    return x, convnet_pb2_grpc.ClassifierStub(channel).Classify(
        pb.ClassifyRequest(model=MODEL, tensor=tensor(x)), timeout=10, metadata=metadata)


def test_tls_serves_tls_clients_and_refuses_plaintext_and_strangers(bare_server, tmp_path, reference):
    ca = ThrowawayCA(tmp_path / "ca")
    cert = ca.issue("server", server=True)
    process, port = bare_server("--tls-cert", str(cert.cert), "--tls-key", str(cert.key))
    with grpc.secure_channel(f"localhost:{port}", grpc.ssl_channel_credentials(ca.pem)) as channel:
        x, reply = classify(channel)
    assert_scores(reply_scores(reply), reference(MODEL, x))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel, pytest.raises(grpc.RpcError) as plaintext:
        classify(channel)
    assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE
    other = ThrowawayCA(tmp_path / "other", "another CA")
    with grpc.secure_channel(f"localhost:{port}", grpc.ssl_channel_credentials(other.pem)) as channel, \
            pytest.raises(grpc.RpcError) as stranger:
        classify(channel)
    assert stranger.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_requires_a_client_certificate_from_the_ca(bare_server, tmp_path, reference):
    ca = ThrowawayCA(tmp_path / "ca")
    cert = ca.issue("server", server=True)
    process, port = bare_server("--tls-cert", str(cert.cert), "--tls-key", str(cert.key), "--tls-client-ca", str(ca.cert))
    target = f"localhost:{port}"
    client = ca.issue("client", server=False)
    with grpc.secure_channel(target, grpc.ssl_channel_credentials(ca.pem, *client.pair)) as channel:
        x, reply = classify(channel)
    assert_scores(reply_scores(reply), reference(MODEL, x))
    with grpc.secure_channel(target, grpc.ssl_channel_credentials(ca.pem)) as channel, pytest.raises(grpc.RpcError) as none:
        classify(channel)
    assert none.value.code() == grpc.StatusCode.UNAVAILABLE
    intruder = ThrowawayCA(tmp_path / "other", "another CA").issue("intruder", server=False)
    with grpc.secure_channel(target, grpc.ssl_channel_credentials(ca.pem, *intruder.pair)) as channel, \
            pytest.raises(grpc.RpcError) as foreign:
        classify(channel)
    assert foreign.value.code() == grpc.StatusCode.UNAVAILABLE


def every_rpc(channel: grpc.Channel, metadata):
    """One call of every inference and metadata RPC of both APIs, and reflection."""
    own = convnet_pb2_grpc.ClassifierStub(channel)
    kserve = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="input", datatype="FP32", shape=[1, 3, 32, 32])
    request.raw_input_contents.append(images(1, seed=0).tobytes())
    one = pb.ClassifyRequest(model=MODEL, tensor=tensor(images(1, seed=0)))
    m = {"timeout": 10, "metadata": metadata}
    return {
        "Classify": lambda: own.Classify(one, **m),
        "ClassifyStream": lambda: list(own.ClassifyStream(iter([one]), **m)),
        "ListModels": lambda: own.ListModels(pb.ListModelsRequest(), **m),
        "GetModelInfo": lambda: own.GetModelInfo(pb.GetModelInfoRequest(model=MODEL), **m),
        "ServerLive": lambda: kserve.ServerLive(service_pb2.ServerLiveRequest(), **m),
        "ServerReady": lambda: kserve.ServerReady(service_pb2.ServerReadyRequest(), **m),
        "ServerMetadata": lambda: kserve.ServerMetadata(service_pb2.ServerMetadataRequest(), **m),
        "ModelReady": lambda: kserve.ModelReady(service_pb2.ModelReadyRequest(name=MODEL), **m),
        "ModelMetadata": lambda: kserve.ModelMetadata(service_pb2.ModelMetadataRequest(name=MODEL), **m),
        "ModelInfer": lambda: kserve.ModelInfer(request, **m),
        "ModelStatistics": lambda: kserve.ModelStatistics(service_pb2.ModelStatisticsRequest(name=MODEL), **m),
        "Reflection": lambda: list(reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), **m)),
    }


@pytest.mark.parametrize("source", ["env", "file"])
def test_bearer_token_guards_every_rpc_but_health(start_server, tmp_path, source):
    token = "t0ken-" + "x" * 20
    if source == "env":
        server = start_server(env={"CONVNET_AUTH_TOKEN": token})
    else:
        (tmp_path / "token").write_text(token + "\n")
        server = start_server("--auth-token-file", str(tmp_path / "token"))
    channel = server.channel()
    for metadata, why in [(None, "received none"), ((("authorization", f"Bearer {token}x"),), "not"),
                          ((("authorization", f"Basic {token}"),), "another scheme"),
                          ((("authorization", "Bearer"),), "without a token")]:
        for name, call in every_rpc(channel, metadata).items():
            with pytest.raises(grpc.RpcError) as refused:
                call()
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, (name, refused.value)
            assert why in refused.value.details() and token not in refused.value.details()
    for scheme in ("Bearer", "bearer", "BEARER"):  # RFC 7235: the scheme is case-insensitive
        for name, call in every_rpc(channel, (("authorization", f"{scheme} {token}"),)).items():
            call()  # raises if refused
    assert server.health() == "SERVING" and server.health(MODEL) == "SERVING"  # no token needed
    assert "bearer token required" in server.output() and token not in server.output()


def test_token_less_health_watches_cannot_lock_authenticated_callers_out(start_server, reference):
    token = "t0ken-" + "y" * 20
    limit = 3
    server = start_server("--max-concurrent-rpcs", str(limit), env={"CONVNET_AUTH_TOKEN": token})
    channel = server.channel()
    health = health_pb2_grpc.HealthStub(channel)
    watches = [health.Watch(health_pb2.HealthCheckRequest(), timeout=60) for _ in range(limit)]
    assert {next(w).status for w in watches} == {health_pb2.HealthCheckResponse.SERVING}  # all open, holding a slot
    with pytest.raises(grpc.RpcError) as extra:
        next(health.Watch(health_pb2.HealthCheckRequest(), timeout=10))
    authenticated = (("authorization", f"Bearer {token}"),)
    x, reply = classify(channel, authenticated)
    assert_scores(reply_scores(reply), reference(MODEL, x))
    answered = [call() for call in every_rpc(channel, authenticated).values()]
    probe = server.health()  # a health check is counted apart from the watches
    for watch in watches:
        watch.cancel()
    assert extra.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_concurrent_rpcs" in extra.value.details() and f"at most {limit}" in extra.value.details()
    assert len(answered) == len(every_rpc(channel, authenticated)) and probe == "SERVING"
