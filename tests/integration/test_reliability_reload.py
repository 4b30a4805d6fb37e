"""Zero-downtime model updates on a live server: a version dropped into the repository takes over
on SIGHUP (or by polling) while callers keep calling, none failing; a broken version never
replaces the working one and its reason is reported."""
from __future__ import annotations

import os
import shutil
import signal
import threading

import grpc
from test_server_helpers import assert_scores, images, reply_scores, tensor

from bench.launcher import wait_until
from service.generated.convnet.v1 import convnet_pb2 as pb
from service.generated.convnet.v1 import convnet_pb2_grpc

MODEL = "cifar-tiny"


def drop_version(repo, source, version: int, corrupt: bool = False) -> None:
    """Copy ``source``'s version 1 as ``version``: written aside, then renamed into place at once."""
    staging = repo / MODEL / f".incoming-{version}"
    shutil.copytree(source / MODEL / "1", staging)
    if corrupt:
        (staging / "model.onnx").write_bytes(b"\x08\x07 broken upload")
    os.rename(staging, repo / MODEL / str(version))


class Callers:
    """Threads calling Classify in a loop, recording (version, scores ok) or the error of each call."""

    def __init__(self, target: str, reference, threads: int = 3):
        self.x = images(2, seed=8)
        self.expected = reference(MODEL, self.x)
        self.stop = threading.Event()
        self.seen: list[list[int]] = [[] for _ in range(threads)]
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(target, i)) for i in range(threads)]

    def _run(self, target: str, i: int) -> None:
        with grpc.insecure_channel(target) as channel:
            stub = convnet_pb2_grpc.ClassifierStub(channel)
            while not self.stop.is_set():
                try:
                    reply = stub.Classify(pb.ClassifyRequest(model=MODEL, tensor=tensor(self.x)), timeout=30)
                    assert_scores(reply_scores(reply), self.expected)
                    self.seen[i].append(reply.version)
                except Exception as exc:  # every failure is a finding
                    self.errors.append(repr(exc))

    def __enter__(self) -> "Callers":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def wait_for(self, version: int, timeout: float = 60) -> None:
        wait_until(lambda: all(seen and seen[-1] == version for seen in self.seen),
                   f"every caller answered by version {version}", timeout)

    def wait_for_more(self, replies: int, timeout: float = 60) -> None:
        """Until every caller got ``replies`` more replies than it has now."""
        counts = [len(seen) for seen in self.seen]
        wait_until(lambda: all(len(seen) >= n + replies for seen, n in zip(self.seen, counts)),
                   f"every caller answered {replies} more calls", timeout)


def info(server):
    return convnet_pb2_grpc.ClassifierStub(server.channel()).GetModelInfo(pb.GetModelInfoRequest(model=MODEL), timeout=10)


def test_sighup_swaps_in_a_new_version_under_load_and_keeps_a_broken_one_out(start_server, model_repo, tmp_path, reference):
    repo = tmp_path / "models"
    shutil.copytree(model_repo / MODEL, repo / MODEL)
    server = start_server(models=repo)
    with Callers(server.target, reference) as callers:
        callers.wait_for_more(3)  # answered by version 1
        drop_version(repo, model_repo, 2)
        server.process.send_signal(signal.SIGHUP)
        callers.wait_for(2)
        callers.wait_for_more(6)  # answered by version 2
        drop_version(repo, model_repo, 3, corrupt=True)
        server.process.send_signal(signal.SIGHUP)
        wait_until(lambda: "version 3: NOT loaded" in server.output(), "the log line of the broken version 3",
                   30, log=server.log_path)
        callers.wait_for_more(3)  # still answered after the broken version was kept out
    assert callers.errors == []
    for seen in callers.seen:
        assert seen[0] == 1 and seen[-1] == 2 and set(seen) == {1, 2}
        switch = seen.index(2)
        assert all(v == 2 for v in seen[switch:]), "after the switch, no call went back to version 1"
        assert switch > 0 and len(seen) - switch > 5
    assert "model cifar-tiny version 2: loaded; default version 1 -> 2" in server.output()
    assert "still serving version 2" in server.output()
    now = info(server)
    assert now.default_version == 2
    assert [(v.version, v.ready) for v in now.versions] == [(1, True), (2, True), (3, False)]
    assert "onnxruntime cannot load it" in now.versions[2].reason
    assert server.health(MODEL) == "SERVING"


def test_polling_picks_up_new_versions_and_models_without_a_signal(start_server, model_repo, tmp_path, reference):
    repo = tmp_path / "models"
    shutil.copytree(model_repo / MODEL, repo / MODEL)
    server = start_server("--reload-interval-s", "0.2", models=repo)
    drop_version(repo, model_repo, 2)
    shutil.copytree(model_repo / "cifar-vgg", repo / ".incoming-vgg")
    os.rename(repo / ".incoming-vgg", repo / "cifar-vgg")
    wait_until(lambda: info(server).default_version == 2 and _ready(server, "cifar-vgg"),
               "version 2 the default and cifar-vgg SERVING", 30, log=server.log_path)
    x = images(1, seed=3)
    stub = convnet_pb2_grpc.ClassifierStub(server.channel())
    reply = stub.Classify(pb.ClassifyRequest(model="cifar-vgg", tensor=tensor(x)), timeout=30)
    assert_scores(reply_scores(reply), reference("cifar-vgg", x))
    assert server.health("cifar-vgg") == "SERVING"


def _ready(server, model: str) -> bool:
    try:
        return server.health(model) == "SERVING"
    except grpc.RpcError:
        return False
