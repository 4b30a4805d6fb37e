"""``python -m service classify``: send images (encoded, as files are) or random tensors to a running
server, one request per image, and print the top labels and the latency of each."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Iterator

import grpc
import numpy as np

from .generated.convnet.v1 import convnet_pb2 as pb
from .generated.convnet.v1 import convnet_pb2_grpc

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
DEFAULT_MODEL = "fashion"  # the trained default (training.defaults)


def connect(target: str) -> convnet_pb2_grpc.ClassifierStub:
    channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                                                     ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
    return convnet_pb2_grpc.ClassifierStub(channel)


def tensor_message(x: np.ndarray) -> pb.Tensor:
    """A float32 NCHW array as the API's raw little-endian tensor."""
    return pb.Tensor(shape=x.shape, data=np.ascontiguousarray(x, dtype="<f4").tobytes())


def pick_model(stub: convnet_pb2_grpc.ClassifierStub, name: str | None, timeout: float) -> pb.ModelInfo:
    """The named model's info; without a name ``fashion`` if ready, else the first ready trained
    model the server lists, else the first ready one."""
    if name:
        return stub.GetModelInfo(pb.GetModelInfoRequest(model=name), timeout=timeout)
    ready = [m for m in stub.ListModels(pb.ListModelsRequest(), timeout=timeout).models if m.ready]
    if not ready:
        raise SystemExit("classify: error: the server has no ready model")
    return min(ready, key=lambda m: (m.name != DEFAULT_MODEL, m.HasField("trained") and not m.trained, m.name))


def untrained_warning(info: pb.ModelInfo) -> str | None:
    """One line for a model whose config says its weights are random."""
    if info.HasField("trained") and not info.trained:
        return (f"classify: warning: model {info.name!r} has random (untrained) weights, for benchmarks; "
                f"its answers mean nothing (a trained model: {DEFAULT_MODEL!r})")
    return None


def requests(args: argparse.Namespace, info: pb.ModelInfo) -> Iterator[tuple[str, pb.ClassifyRequest | str]]:
    """(image name, request) per image; a request is replaced by an error text for unreadable files."""
    common = dict(model=info.name, version=args.version, top_k=args.top_k)
    if args.random is not None:
        rng = np.random.default_rng(args.seed)
        c, h, w = [d if d > 0 else r for d, r in zip(info.input.shape, [0, *info.preprocessing.resize])]
        for i in range(args.random):
            x = rng.standard_normal((1, c, h, w)).astype(np.float32)
            yield f"random-{i}", pb.ClassifyRequest(tensor=tensor_message(x), request_id=f"random-{i}", **common)
        return
    for path in args.images:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            yield path, f"cannot read {path}: {exc.strerror}"
            continue
        yield path, pb.ClassifyRequest(images=pb.EncodedImages(images=[data]), request_id=path, **common)


def classify_command(args: argparse.Namespace) -> int:
    stub = connect(args.target)
    try:
        info = pick_model(stub, args.model, args.timeout)
    except grpc.RpcError as err:
        print(f"classify: error: {args.target}: {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    warning = untrained_warning(info)
    if warning:
        print(warning, file=sys.stderr)
    failures = 0
    for name, request in requests(args, info):
        if isinstance(request, str):
            print(f"classify: {name}: {request}", file=sys.stderr)
            failures += 1
            continue
        start = time.perf_counter()
        try:
            reply = stub.Classify(request, timeout=args.timeout)
        except grpc.RpcError as err:
            print(f"classify: {name}: {err.code().name}: {err.details()}", file=sys.stderr)
            failures += 1
            continue
        latency_ms = (time.perf_counter() - start) * 1e3
        top = [{"label": t.label, "probability": round(t.probability, 6)} for t in reply.results[0].top]
        if args.json:
            print(json.dumps({"image": name, "top": top, "latency_ms": round(latency_ms, 3)}), flush=True)
        else:
            print(f"{name}  ({reply.model} v{reply.version}, {latency_ms:.2f} ms)")
            width = max(len(t["label"]) for t in top)
            for rank, t in enumerate(top, start=1):
                print(f"  {rank}. {t['label']:<{width}}  {t['probability']:.4f}")
    return 1 if failures else 0
