"""The project's own API, convnet.v1.Classifier: Classify, ClassifyStream, ListModels, GetModelInfo.

Classify runs on a handler thread of the transport; the others are coroutines on the event loop
(service.grpc_transport)."""
from __future__ import annotations

import asyncio
import math
from concurrent.futures import Executor

import grpc

from ..batching import ThreadGate
from ..config import ServerConfig
from ..drain import SHUTTING_DOWN, Drain
from ..errors import InvalidInput
from ..infer import Inference, InferRequest, InferResult
from ..generated.convnet.v1 import convnet_pb2 as pb
from ..generated.convnet.v1 import convnet_pb2_grpc
from ..inputs import Fields, decode_images, tensor_from_bytes
from ..metrics import Metrics
from ..models import ModelRegistry, ServedModel, ServedVersion
from ..repository import ModelSpec
from ..replies import ReplyEncoder
from ..settings import DEFAULT_TOP_K
from ..streams import StreamBudget, request_images
from ..grpc_transport import time_remaining
from .status import abort, failed

REPLY_BYTES_PER_SCORE = 5
"""What a stream reserves per output value of a request before its reply exists: a float32 score
(4 bytes) plus its share of the message's framing."""
TENSOR_FIELDS = Fields("tensor.shape", "tensor.data")


class ClassifierServicer(convnet_pb2_grpc.ClassifierServicer):
    def __init__(self, registry: ModelRegistry, config: ServerConfig, metrics: Metrics, decoder: Executor,
                 drain: Drain | None = None, gate: ThreadGate | None = None):
        self.registry = registry
        self.gate = gate or ThreadGate()
        self.drain = drain
        self.config = config
        self.metrics = metrics
        self.decoder = decoder
        self.inference = Inference(registry)
        self._encoders: dict[tuple[str, int], ReplyEncoder] = {}

    def Classify(self, request: pb.ClassifyRequest, context: grpc.ServicerContext) -> bytes:
        """On the handler thread (service.grpc_transport); the reply comes encoded (service.replies),
        which wire.py's serializer sends as it is."""
        with self.metrics.track("classify") as tracker, self.gate:
            try:
                return self._encode(request, self.inference.infer_blocking(
                    self._decode(request), time_remaining(context), tracker, self.gate, context.add_callback))
            except Exception as exc:
                context.abort(*failed(exc, tracker))

    async def ClassifyStream(self, requests, context):
        """Requests run concurrently; each reply goes out when ready (service.streams bounds what
        the stream holds). Once the server refuses new requests (service.drain), the stream stops
        reading, answers what it took and ends UNAVAILABLE, so the client goes elsewhere."""
        budget = StreamBudget(self.config.stream_max_images, self.config.stream_max_bytes)
        replies: asyncio.Queue[tuple[bytes | pb.ClassifyResponse, int, int] | None] = asyncio.Queue()
        working: set[asyncio.Task] = set()
        reading = closed = False

        async def answer(request: pb.ClassifyRequest, images: int, nbytes: int, reply_bytes: int) -> None:
            with self.metrics.track("classify_stream") as tracker:
                try:
                    reply = self._encode(request, await self.inference.infer(
                        self._decode(request), context.time_remaining(), tracker))
                except Exception as exc:
                    code, message = failed(exc, tracker)
                    reply = pb.ClassifyResponse(request_id=request.request_id, error=pb.Error(
                        code=code.value[0], code_name=code.name, message=message))
            size = (len(reply) if reply.__class__ is bytes else reply.ByteSize()) - images * reply_bytes
            budget.grow(size)  # the reply as encoded, in place of its estimate
            replies.put_nowait((reply, images, nbytes + size))

        async def read() -> None:
            nonlocal reading
            try:
                iterator = aiter(requests)
                while not closed:
                    reading = True
                    try:
                        request = await anext(iterator)
                    except StopAsyncIteration:
                        break
                    except asyncio.CancelledError:
                        if not closed:
                            raise
                        break
                    finally:
                        reading = False
                    images = request_images(request)
                    queue_size, reply_bytes = self._limits(request)
                    nbytes = request.ByteSize() + images * reply_bytes
                    await budget.acquire(images, nbytes, queue_size)
                    task = asyncio.create_task(answer(request, images, nbytes, reply_bytes))
                    working.add(task)
                    task.add_done_callback(working.discard)
                if working:
                    await asyncio.wait(set(working))
            finally:
                replies.put_nowait(None)

        async def close_on_drain() -> None:
            nonlocal closed
            await self.drain.closing()
            closed = True
            if reading:
                reader.cancel()

        reader = asyncio.create_task(read())
        watcher = asyncio.create_task(close_on_drain()) if self.drain is not None else None
        try:
            while (item := await replies.get()) is not None:
                reply, images, nbytes = item
                yield reply
                budget.release(images, nbytes)
            await reader  # re-raises a failure to read the stream
            if closed:
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"stream ended: {SHUTTING_DOWN}")
        finally:
            reader.cancel()
            if watcher is not None:
                watcher.cancel()
            for task in list(working):
                task.cancel()

    def _limits(self, request: pb.ClassifyRequest) -> tuple[float, int]:
        """The queue size of the request's model version (one stream alone never fills the queue)
        and the reply bytes it reserves per image (its scores), known before the reply is."""
        try:
            model, served = self.inference.lookup(request.model, request.version)
        except Exception:  # answered in-band by the request path
            return math.inf, 0
        queue_size = served.batching.max_queue_size if served is not None else math.inf
        scores = math.prod(max(1, d) for d in model.spec.output_shape) if model.spec is not None else 0
        return queue_size, REPLY_BYTES_PER_SCORE * scores

    async def ListModels(self, request: pb.ListModelsRequest, context) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[model_info(m, m.default) for m in self.registry.models.values()])

    async def GetModelInfo(self, request: pb.GetModelInfoRequest, context) -> pb.ModelInfo:
        try:
            model, served = self.inference.lookup(request.model, request.version)
        except Exception as exc:
            await abort(context, exc)
        return model_info(model, served)

    def _decode(self, request: pb.ClassifyRequest) -> InferRequest:
        """The request as the request path takes it; its input is checked once the model is known."""

        def decode(spec: ModelSpec, served: ServedVersion):
            which = request.WhichOneof("input")
            if which == "tensor":
                return tensor_from_bytes(request.tensor.data, request.tensor.shape, spec, TENSOR_FIELDS,
                                         self.config.reject_non_finite)
            if which == "images":
                return self.decoder.submit(decode_images, request.images.images, spec, "images.images",
                                           self.config.max_image_pixels, served.batching.max_batch_size)
            raise InvalidInput("input: expected a tensor or encoded images, received neither")

        return InferRequest(request.model, decode, request.version,
                            request.timeout_ms / 1e3 if request.timeout_ms else None, request.priority,
                            request.request_id)

    def _encode(self, request: pb.ClassifyRequest, result: InferResult) -> bytes:
        served = result.served
        return self._encoder(served, result.spec.labels).encode(request.request_id, result.outputs,
                                                                request.top_k or DEFAULT_TOP_K)

    def _encoder(self, served: ServedVersion, labels: tuple[str, ...]) -> ReplyEncoder:
        """The version's reply encoder, made again when a reload gave the version other labels."""
        encoder = self._encoders.get((served.model, served.version))
        if encoder is None or encoder.labels is not labels:
            encoder = self._encoders[served.model, served.version] = ReplyEncoder(served.model, served.version, labels)
        return encoder


def model_info(model: ServedModel, served: ServedVersion | None) -> pb.ModelInfo:
    """What GetModelInfo and ListModels tell about a model (and one version of it, if given)."""
    info = pb.ModelInfo(
        name=model.name, version=served.version if served else 0,
        default_version=model.default.version if model.default else 0,
        versions=[pb.VersionStatus(version=v.version, ready=v.ready, reason=v.reason)
                  for v in sorted(model.versions.values(), key=lambda v: v.version)],
        ready=model.ready if served is None else served.ready,
        not_ready_reason=model.not_ready_reason if served is None else (served.reason if not served.ready else ""))
    spec = model.spec
    if spec is None:
        return info
    info.input.CopyFrom(pb.TensorSpec(name=spec.input_name, datatype="FP32", shape=spec.input_shape, layout="NCHW"))
    info.output.CopyFrom(pb.TensorSpec(name=spec.output_name, datatype="FP32", shape=spec.output_shape))
    info.labels.extend(spec.labels)
    pre = spec.preprocessing
    info.preprocessing.CopyFrom(pb.Preprocessing(color=pre.color, resize=pre.resize, scale=pre.scale,
                                                 mean=pre.mean, std=pre.std, invert=pre.invert))
    if spec.trained is not None:
        info.trained = spec.trained
    batching = (served or next(iter(model.versions.values()), None))
    if batching is not None:
        b = batching.batching
        info.batching.CopyFrom(pb.Batching(
            max_batch_size=b.max_batch_size, max_queue_delay_ms=b.max_queue_delay_ms,
            preferred_batch_sizes=b.preferred_batch_sizes, max_queue_size=b.max_queue_size, instances=b.instances))
    if served is not None:
        info.execution_providers.extend(served.providers)
    info.architecture = spec.architecture
    info.spec = spec.spec
    return info
