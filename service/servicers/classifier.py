"""The project's own API, convnet.v1.Classifier: Classify, ClassifyStream, ListModels, GetModelInfo."""
from __future__ import annotations

import asyncio
from concurrent.futures import Executor

import grpc

from ..config import ServerConfig
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
from .status import abort, failed

TENSOR_FIELDS = Fields("tensor.shape", "tensor.data")
STREAM_MAX_INFLIGHT = 256
"""Requests of one stream being worked on at once; the stream stops reading beyond it (back-pressure)."""


class ClassifierServicer(convnet_pb2_grpc.ClassifierServicer):
    def __init__(self, registry: ModelRegistry, config: ServerConfig, metrics: Metrics, decoder: Executor):
        self.registry = registry
        self.config = config
        self.metrics = metrics
        self.decoder = decoder
        self.inference = Inference(registry)
        self._encoders: dict[tuple[str, int], ReplyEncoder] = {}

    async def Classify(self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext) -> bytes:
        """The reply comes encoded (service.replies); wire.py's serializer sends bytes as they are."""
        with self.metrics.track("classify") as tracker:
            try:
                return self._encode(request, await self.inference.infer(
                    self._decode(request), context.time_remaining(), tracker))
            except Exception as exc:
                await abort(context, exc, tracker)

    async def ClassifyStream(self, requests, context: grpc.aio.ServicerContext):
        """Requests run concurrently (up to STREAM_MAX_INFLIGHT); each reply goes out when ready."""
        replies: asyncio.Queue[bytes | pb.ClassifyResponse | None] = asyncio.Queue()
        slots = asyncio.Semaphore(STREAM_MAX_INFLIGHT)
        working: set[asyncio.Task] = set()

        async def answer(request: pb.ClassifyRequest) -> None:
            with self.metrics.track("classify_stream") as tracker:
                try:
                    reply = self._encode(request, await self.inference.infer(
                        self._decode(request), context.time_remaining(), tracker))
                except Exception as exc:
                    code, message = failed(exc, tracker)
                    reply = pb.ClassifyResponse(request_id=request.request_id, error=pb.Error(
                        code=code.value[0], code_name=code.name, message=message))
                finally:
                    slots.release()
            replies.put_nowait(reply)

        async def read() -> None:
            try:
                async for request in requests:
                    await slots.acquire()
                    task = asyncio.create_task(answer(request))
                    working.add(task)
                    task.add_done_callback(working.discard)
                if working:
                    await asyncio.wait(set(working))
            finally:
                replies.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (reply := await replies.get()) is not None:
                yield reply
            await reader  # re-raises a failure to read the stream
        finally:
            reader.cancel()
            for task in list(working):
                task.cancel()

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
                return asyncio.get_running_loop().run_in_executor(
                    self.decoder, decode_images, request.images.images, spec, "images.images",
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
