"""A bare gRPC echo server with the service's messages: the transport limit for benchmarks.

It answers convnet.v1 Classify and KServe v2 ModelInfer with a reply of the size the real server
would send for the same request (scores and top-k labels per image, or the raw score tensor),
built once per request shape and cached, without validating or computing anything. Metadata calls
(ListModels, GetModelInfo, ModelMetadata) describe the repository's models from their config.json,
so ``python -m bench.load`` runs against it unchanged.

Two modes make it the floor of a server of this design, for the benchmarks:

- ``--busy-ms MS``: each reply waits until a worker thread (the batch queue's own instance thread)
  has been busy for MS, so a call costs the transport, the compute time and one thread hand-off,
  and nothing else (meant for one call at a time).
- ``--compute``: each request's own images go through the server's batch queue and onnxruntime
  session for the model (loaded as ``python -m service serve`` loads them), and the cached reply
  waits for that batch. A call then costs the transport, the batching and the compute, and none
  of the server's own per-request work (validation, metrics, scores into replies).

    python -m bench.echo [--models DIR] [--host H] [--port P] [--busy-ms MS | --compute]
                           [--intra-op-threads N] [--ready-file FILE]
"""
from __future__ import annotations

import argparse
import asyncio
import math
import signal
import time
from pathlib import Path
from typing import Callable

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from service.config import ServerConfig
from service.errors import InvalidInput
from service.generated.convnet.v1 import convnet_pb2 as pb
from service.generated.convnet.v1 import convnet_pb2_grpc
from service.generated.inference import grpc_service_pb2 as kpb
from service.generated.inference import grpc_service_pb2_grpc
from service.idle import run
from service.infer import InferResult
from bench.instances import InstanceThread
from service.models import ModelRegistry, ServedVersion
from service.repository import ModelSpec, model_dirs, read_spec
from service.replies import ReplyEncoder
from service.scores import score
from service.connections import grpc_options
from service.summary import address, write_ready_file
from service.servicers.kserve import infer_reply
from service.servicers.status import status_of
from service.settings import DEFAULT_TOP_K
from service.wire import add_tolerant

class EchoReplies:
    """Replies of the real server's size per (model, images, top-k), encoded once from random scores
    by the server's own builders (service.replies.ReplyEncoder, service.servicers.kserve.infer_reply)."""

    def __init__(self, specs: dict[str, ModelSpec]):
        self.specs = specs
        self._classify: dict[tuple, bytes] = {}
        self._infer: dict[tuple, bytes] = {}

    def spec(self, name: str) -> ModelSpec | None:
        return self.specs.get(name) or (next(iter(self.specs.values())) if not name and self.specs else None)

    def classify(self, spec: ModelSpec, images: int, top_k: int) -> bytes:
        key = (spec.name, images, top_k)
        if key not in self._classify:
            scored = score(random_scores(spec, images))
            self._classify[key] = ReplyEncoder(spec.name, 1, tuple(spec.labels)).encode("", scored, top_k)
        return self._classify[key]

    def infer(self, spec: ModelSpec, images: int, raw: bool) -> bytes:
        key = (spec.name, images, raw)
        if key not in self._infer:
            like = kpb.ModelInferRequest(raw_input_contents=[b""] if raw else [])
            served = ServedVersion(spec.name, 1, Path(spec.name), spec.batching)
            result = InferResult(score(random_scores(spec, images)), served, spec)
            self._infer[key] = infer_reply(like, result).SerializeToString()
        return self._infer[key]


def random_scores(spec: ModelSpec, images: int) -> np.ndarray:
    return np.random.default_rng(images).standard_normal((images, spec.classes)).astype("<f4")


def with_id(reply: bytes, message: type, field: str, value: str) -> bytes:
    """The cached encoded reply, preceded by the caller's request id (a protobuf message's fields
    may come in any order, so the two concatenated parse as one message)."""
    return message(**{field: value}).SerializeToString() + reply if value else reply


def spin(seconds: float) -> None:
    """Keep the CPU busy for ``seconds``, the way a compute would."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


Inputs = Callable[[], np.ndarray]
"""The request's images as the float32 batch it carries; called only by a worker that computes."""


class BusyWorker:
    """Holds each reply until one instance thread has spun for ``busy_ms`` (nothing when 0)."""

    def __init__(self, busy_ms: float = 0.0):
        self.seconds = busy_ms / 1e3
        self._thread = InstanceThread("echo-busy") if busy_ms > 0 else None

    async def hold(self, model: str, inputs: Inputs) -> None:
        if self._thread is None:
            return
        done = asyncio.get_running_loop().create_future()
        self._thread.run(lambda: spin(self.seconds), lambda outcome, failed: done.set_result(None))
        await done

    async def close(self) -> None:
        if self._thread is not None:
            self._thread.stop()


class ComputeWorker:
    """Holds each reply until the request's images have been computed by the model's batch queue."""

    def __init__(self, registry: ModelRegistry):
        self.registry = registry

    async def hold(self, model: str, inputs: Inputs) -> None:
        await self.registry.resolve(model).queue.submit(inputs())

    async def close(self) -> None:
        await self.registry.close(1.0)


def tensor_or_zeros(data: bytes | None, shape, images: int, spec: ModelSpec) -> np.ndarray:
    """The raw little-endian float32 tensor as sent, or zeros for ``images`` images when none was
    sent (encoded images, typed contents): the echo times the compute, not the decoding."""
    if data is None:
        return np.zeros((images, *spec.example_shape()), dtype=np.float32)
    shape = tuple(shape)
    if len(shape) != 4 or len(data) != 4 * math.prod(shape):
        raise InvalidInput(f"tensor: expected 4 dimensions and 4 bytes per value, received shape {list(shape)} "
                           f"and {len(data)} bytes")
    return np.frombuffer(data, dtype="<f4").reshape(shape)


async def held(work: BusyWorker | ComputeWorker, context, model: str, inputs: Inputs) -> None:
    """``work.hold(...)``; a failure (bad tensor, full queue, failed batch) aborts with its status code."""
    try:
        await work.hold(model, inputs)
    except Exception as exc:
        await context.abort(*status_of(exc))


class EchoClassifier(convnet_pb2_grpc.ClassifierServicer):
    def __init__(self, replies: EchoReplies, work: "BusyWorker | ComputeWorker"):
        self.replies = replies
        self.work = work

    async def Classify(self, request: pb.ClassifyRequest, context) -> pb.ClassifyResponse:
        spec = self.replies.spec(request.model)
        if spec is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"model: no model {request.model!r} in the echo server")
        images = request.tensor.shape[0] if request.HasField("tensor") and request.tensor.shape else len(request.images.images)
        reply = self.replies.classify(spec, max(images, 1), min(request.top_k or DEFAULT_TOP_K, spec.classes))
        tensor = request.tensor if request.HasField("tensor") else None
        await held(self.work, context, spec.name, lambda: tensor_or_zeros(
            None if tensor is None else tensor.data, () if tensor is None else tensor.shape, max(images, 1), spec))
        return with_id(reply, pb.ClassifyResponse, "request_id", request.request_id)

    async def ListModels(self, request, context) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[model_info(s) for s in self.replies.specs.values()])

    async def GetModelInfo(self, request: pb.GetModelInfoRequest, context) -> pb.ModelInfo:
        spec = self.replies.specs.get(request.model)
        if spec is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"model: no model {request.model!r} in the echo server")
        return model_info(spec)


class EchoInference(grpc_service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, replies: EchoReplies, work: "BusyWorker | ComputeWorker"):
        self.replies = replies
        self.work = work

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
        raw = request.raw_input_contents[0] if request.raw_input_contents and request.inputs else None
        await held(self.work, context, spec.name, lambda: tensor_or_zeros(
            raw, request.inputs[0].shape if raw is not None else (), max(images, 1), spec))
        return with_id(self.replies.infer(spec, max(images, 1), bool(request.raw_input_contents)), kpb.ModelInferResponse,
                       "id", request.id)


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
                     work: BusyWorker | ComputeWorker | None = None) -> tuple[grpc.aio.Server, int]:
    """A started echo server (the real one's gRPC options and handler registration) and the port it listens on."""
    server = grpc.aio.server(options=grpc_options(ServerConfig().max_message_bytes))
    replies, work = EchoReplies(specs), work or BusyWorker()
    add_tolerant(convnet_pb2_grpc.add_ClassifierServicer_to_server, EchoClassifier(replies, work), server)
    add_tolerant(grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server, EchoInference(replies, work), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = server.add_insecure_port(address(host, port))
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    return server, bound


async def serve(args: argparse.Namespace) -> int:
    specs = load_specs(args.models)
    if not specs:
        print(f"python -m bench.echo: error: --models {args.models}: no readable model config.json")
        return 1
    if args.compute:
        config = ServerConfig(models=args.models, intra_op_threads=args.intra_op_threads)
        registry = await asyncio.to_thread(ModelRegistry.load, config)
        work = ComputeWorker(registry)
        what = f"compute through the batch queue, {args.intra_op_threads or 'default'} intra-op thread(s)"
    else:
        work = BusyWorker(args.busy_ms)
        what = f"{args.busy_ms:g} ms busy per call" if args.busy_ms > 0 else "no compute"
    server, port = await start_echo(specs, args.host, args.port, work)
    print(f"echo server on {args.host}:{port} for {', '.join(specs)} ({what})", flush=True)
    if args.ready_file is not None:
        write_ready_file(args.ready_file, port=port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(s, stop.set)
    await stop.wait()
    await server.stop(1)
    await work.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.echo", description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=Path("models"), help="model repository whose config.json files to mimic")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001, help="gRPC port (0 = any free port)")
    p.add_argument("--busy-ms", type=float, default=0.0,
                   help="hold each inference reply until a worker thread has been busy this long (default 0)")
    p.add_argument("--compute", action="store_true",
                   help="hold each inference reply until its images went through the model's batch queue and session")
    p.add_argument("--intra-op-threads", type=int, default=0, help="with --compute: onnxruntime threads (0 = default)")
    p.add_argument("--ready-file", type=Path, help="write {pid, port} as JSON here once serving")
    args = p.parse_args(argv)
    if args.busy_ms < 0:
        p.error(f"--busy-ms: expected a number >= 0, got {args.busy_ms:g}")
    if args.compute and args.busy_ms > 0:
        p.error("--compute and --busy-ms: expected one of them, got both")
    if args.intra_op_threads < 0:
        p.error(f"--intra-op-threads: expected an integer >= 0, got {args.intra_op_threads}")
    return run(serve(args))  # the server's kind of event loop


if __name__ == "__main__":
    raise SystemExit(main())
