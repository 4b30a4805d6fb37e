"""A bare gRPC echo server with the service's messages: the transport limit for benchmarks.

It answers convnet.v1 Classify and KServe v2 ModelInfer with a reply of the size the real server
would send for the same request (scores and top-k labels per image, or the raw score tensor),
built once per request shape and cached, without validating or computing anything. Metadata calls
(ListModels, GetModelInfo, ModelMetadata) describe the repository's models from their config.json,
so ``python -m service bench`` runs against it unchanged.

``--busy-ms MS`` makes it the floor of a server whose compute takes MS: each reply waits until a
worker thread (the batch queue's own instance thread) has been busy for MS, so a call costs the
transport, the compute time and one thread hand-off, and nothing else (meant for one call at a time).

    python -m service.echo [--models DIR] [--host H] [--port P] [--busy-ms MS] [--ready-file FILE]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from .batching import InstanceThread
from .generated.convnet.v1 import convnet_pb2 as pb
from .generated.convnet.v1 import convnet_pb2_grpc
from .generated.inference import grpc_service_pb2 as kpb
from .generated.inference import grpc_service_pb2_grpc
from .idle import run
from .repository import ModelSpec, model_dirs, read_spec
from .scores import score

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
DEFAULT_TOP_K = 5


class EchoReplies:
    """Replies of the real server's size per (model, images, top-k), made once from random scores."""

    def __init__(self, specs: dict[str, ModelSpec]):
        self.specs = specs
        self._classify: dict[tuple, pb.ClassifyResponse] = {}
        self._infer: dict[tuple, kpb.ModelInferResponse] = {}

    def spec(self, name: str) -> ModelSpec | None:
        return self.specs.get(name) or (next(iter(self.specs.values())) if not name and self.specs else None)

    def classify(self, spec: ModelSpec, images: int, top_k: int) -> pb.ClassifyResponse:
        key = (spec.name, images, top_k)
        if key not in self._classify:
            scored = score(np.random.default_rng(images).standard_normal((images, spec.classes)).astype(np.float32))
            reply = pb.ClassifyResponse(model=spec.name, version=1)
            for row in range(images):
                result = reply.results.add(scores=scored.scores[row].tolist())
                for i in scored.ranking[row, :top_k].tolist():
                    result.top.add(label=spec.labels[i], index=i, probability=scored.probabilities[row, i])
            self._classify[key] = reply
        return self._classify[key]

    def infer(self, spec: ModelSpec, images: int, raw: bool) -> kpb.ModelInferResponse:
        key = (spec.name, images, raw)
        if key not in self._infer:
            scores = np.random.default_rng(images).standard_normal((images, spec.classes)).astype("<f4")
            reply = kpb.ModelInferResponse(model_name=spec.name, model_version="1")
            output = reply.outputs.add(name=spec.output_name, datatype="FP32", shape=scores.shape)
            if raw:
                reply.raw_output_contents.append(scores.tobytes())
            else:
                output.contents.fp32_contents.extend(scores.ravel().tolist())
            self._infer[key] = reply
        return self._infer[key]


def with_id(reply, field: str, value: str):
    """The cached reply, or a copy of it carrying the caller's request id."""
    if not value:
        return reply
    copy = type(reply)()
    copy.CopyFrom(reply)
    setattr(copy, field, value)
    return copy


def spin(seconds: float) -> None:
    """Keep the CPU busy for ``seconds``, the way a compute would."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class BusyWorker:
    """Holds each reply until one instance thread has spun for ``busy_ms`` (nothing when 0)."""

    def __init__(self, busy_ms: float = 0.0):
        self.seconds = busy_ms / 1e3
        self._thread = InstanceThread("echo-busy") if busy_ms > 0 else None

    async def hold(self) -> None:
        if self._thread is None:
            return
        done = asyncio.get_running_loop().create_future()
        self._thread.run(lambda: spin(self.seconds), lambda outcome, failed: done.set_result(None))
        await done


class EchoClassifier(convnet_pb2_grpc.ClassifierServicer):
    def __init__(self, replies: EchoReplies, busy: BusyWorker):
        self.replies = replies
        self.busy = busy

    async def Classify(self, request: pb.ClassifyRequest, context) -> pb.ClassifyResponse:
        spec = self.replies.spec(request.model)
        if spec is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"model: no model {request.model!r} in the echo server")
        images = request.tensor.shape[0] if request.HasField("tensor") and request.tensor.shape else len(request.images.images)
        reply = self.replies.classify(spec, max(images, 1), min(request.top_k or DEFAULT_TOP_K, spec.classes))
        await self.busy.hold()
        return with_id(reply, "request_id", request.request_id)

    async def ListModels(self, request, context) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[model_info(s) for s in self.replies.specs.values()])

    async def GetModelInfo(self, request: pb.GetModelInfoRequest, context) -> pb.ModelInfo:
        spec = self.replies.specs.get(request.model)
        if spec is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"model: no model {request.model!r} in the echo server")
        return model_info(spec)


class EchoInference(grpc_service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, replies: EchoReplies, busy: BusyWorker):
        self.replies = replies
        self.busy = busy

    async def ServerLive(self, request, context):
        return kpb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return kpb.ServerReadyResponse(ready=True)

    async def ModelReady(self, request, context):
        return kpb.ModelReadyResponse(ready=request.name in self.replies.specs)

    async def ModelMetadata(self, request, context):
        spec = self.replies.specs.get(request.name)
        if spec is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"name: no model {request.name!r} in the echo server")
        Tensor = kpb.ModelMetadataResponse.TensorMetadata
        return kpb.ModelMetadataResponse(
            name=spec.name, versions=["1"], platform="echo",
            inputs=[Tensor(name=spec.input_name, datatype="FP32", shape=[-1, *spec.input_shape])],
            outputs=[Tensor(name=spec.output_name, datatype="FP32", shape=[-1, *spec.output_shape])])

    async def ModelInfer(self, request: kpb.ModelInferRequest, context):
        spec = self.replies.specs.get(request.model_name)
        if spec is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"model_name: no model {request.model_name!r} in the echo server")
        images = request.inputs[0].shape[0] if request.inputs and request.inputs[0].shape else 1
        await self.busy.hold()
        return with_id(self.replies.infer(spec, max(images, 1), bool(request.raw_input_contents)), "id", request.id)


def model_info(spec: ModelSpec) -> pb.ModelInfo:
    pre = spec.preprocessing
    b = spec.batching
    return pb.ModelInfo(
        name=spec.name, version=1, default_version=1, versions=[pb.VersionStatus(version=1, ready=True)], ready=True,
        input=pb.TensorSpec(name=spec.input_name, datatype="FP32", shape=spec.input_shape, layout="NCHW"),
        output=pb.TensorSpec(name=spec.output_name, datatype="FP32", shape=spec.output_shape),
        labels=spec.labels, architecture=spec.architecture, spec=spec.spec,
        preprocessing=pb.Preprocessing(color=pre.color, resize=pre.resize, scale=pre.scale, mean=pre.mean, std=pre.std),
        batching=pb.Batching(max_batch_size=b.max_batch_size, max_queue_delay_ms=b.max_queue_delay_ms,
                             preferred_batch_sizes=b.preferred_batch_sizes, max_queue_size=b.max_queue_size,
                             instances=b.instances),
        execution_providers=["echo"])


def load_specs(models: Path) -> dict[str, ModelSpec]:
    """Every readable config.json of the repository (broken ones are left out)."""
    specs = {}
    for model_dir in model_dirs(models):
        try:
            specs[model_dir.name] = read_spec(model_dir)
        except ValueError:
            continue
    return specs


async def start_echo(specs: dict[str, ModelSpec], host: str = "127.0.0.1", port: int = 0,
                     busy_ms: float = 0.0) -> tuple[grpc.aio.Server, int]:
    """A started echo server (same gRPC options as the real one) and the port it listens on."""
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                                      ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                                      ("grpc.so_reuseport", 0)])
    replies, busy = EchoReplies(specs), BusyWorker(busy_ms)
    convnet_pb2_grpc.add_ClassifierServicer_to_server(EchoClassifier(replies, busy), server)
    grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(EchoInference(replies, busy), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = server.add_insecure_port(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    return server, bound


async def serve(args: argparse.Namespace) -> int:
    specs = load_specs(args.models)
    if not specs:
        print(f"python -m service.echo: error: --models {args.models}: no readable model config.json")
        return 1
    server, port = await start_echo(specs, args.host, args.port, args.busy_ms)
    work = f"{args.busy_ms:g} ms busy per call" if args.busy_ms > 0 else "no compute"
    print(f"echo server on {args.host}:{port} for {', '.join(specs)} ({work})", flush=True)
    if args.ready_file is not None:
        tmp = args.ready_file.with_name(args.ready_file.name + ".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "port": port}))
        os.replace(tmp, args.ready_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(s, stop.set)
    await stop.wait()
    await server.stop(1)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m service.echo", description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=Path("models"), help="model repository whose config.json files to mimic")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001, help="gRPC port (0 = any free port)")
    p.add_argument("--busy-ms", type=float, default=0.0,
                   help="hold each inference reply until a worker thread has been busy this long (default 0)")
    p.add_argument("--ready-file", type=Path, help="write {pid, port} as JSON here once serving")
    args = p.parse_args(argv)
    if args.busy_ms < 0:
        p.error(f"--busy-ms: expected a number >= 0, got {args.busy_ms:g}")
    return run(serve(args))  # the server's kind of event loop


if __name__ == "__main__":
    raise SystemExit(main())
