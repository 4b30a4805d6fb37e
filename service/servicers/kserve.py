"""The KServe v2 / Open Inference Protocol, inference.GRPCInferenceService, over the same models.

A model has one input (config.json's ``input.name``, FP32 [N, C, H, W]) and one output
(``output.name``, the raw class scores, FP32 [N, classes]). Inputs come as typed
``fp32_contents`` or as ``raw_input_contents``; the reply is raw when the request was (then
encoded straight into bytes, service.replies). The
request's ``id`` is echoed. The scheduling parameters: ``timeout`` (int64 microseconds) bounds the
time in the queue, as the call's gRPC deadline does; ``priority`` (uint64, as tritonclient sends it;
0 = the model's default level, 1 the highest) picks the priority level.
"""
from __future__ import annotations

import grpc
import numpy as np

from .. import __version__
from ..batching import ThreadGate
from ..config import ServerConfig
from ..control import ModelControl
from ..errors import InvalidInput, ModelNotReady
from ..infer import Inference, InferRequest, InferResult
from ..generated.inference import grpc_service_pb2 as pb
from ..generated.inference import grpc_service_pb2_grpc
from ..inputs import Fields, tensor_from_bytes, tensor_from_values
from ..metrics import Metrics
from ..models import ModelRegistry, ServedModel, ServedVersion
from ..replies import RawInferReplyEncoder
from ..repository import ModelSpec
from ..timing import HEADER as TIMING_HEADER
from .extensions import ExtensionsMixin
from ..grpc_transport import time_remaining
from .status import abort, failed

SERVER_NAME = "convnet-serve"
PLATFORM = "onnxruntime_onnx"


def request_timeout(request: pb.ModelInferRequest) -> float | None:
    """The ``timeout`` request parameter (int64 microseconds) in seconds, if given."""
    if "timeout" not in request.parameters:
        return None
    param = request.parameters["timeout"]
    if param.WhichOneof("parameter_choice") not in ("int64_param", "uint64_param"):
        raise InvalidInput(f"parameters['timeout']: expected an int64 number of microseconds, "
                           f"received {param.WhichOneof('parameter_choice')}")
    value = getattr(param, param.WhichOneof("parameter_choice"))
    if value < 0:
        raise InvalidInput(f"parameters['timeout']: expected microseconds >= 0, received {value}")
    return value / 1e6 if value else None


def request_priority(request: pb.ModelInferRequest) -> int:
    """The ``priority`` request parameter (uint64 or int64; 0 = the model's default level)."""
    if "priority" not in request.parameters:
        return 0
    param = request.parameters["priority"]
    which = param.WhichOneof("parameter_choice")
    if which not in ("uint64_param", "int64_param"):
        raise InvalidInput(f"parameters['priority']: expected a uint64 priority level (0 = the model's default), "
                           f"received {which}")
    value = getattr(param, which)
    if value < 0:
        raise InvalidInput(f"parameters['priority']: expected a level >= 0 (0 = the model's default), received {value}")
    return value


def infer_input(request: pb.ModelInferRequest, spec: ModelSpec, reject_non_finite: bool) -> np.ndarray:
    """The request's one input tensor, typed or raw, checked against the model."""
    if len(request.inputs) != 1:
        raise InvalidInput(f"inputs: expected exactly 1 input ({spec.input_name!r}), received {len(request.inputs)}"
                           + (f" ({', '.join(repr(t.name) for t in request.inputs)})" if request.inputs else ""))
    tensor = request.inputs[0]
    if tensor.name != spec.input_name:
        raise InvalidInput(f"inputs[0].name: expected {spec.input_name!r}, received {tensor.name!r}")
    if tensor.datatype != "FP32":
        raise InvalidInput(f"inputs[0].datatype: expected 'FP32', received {tensor.datatype!r}")
    fields = Fields("inputs[0].shape", "raw_input_contents[0]")
    if request.raw_input_contents:
        if len(request.raw_input_contents) != 1:
            raise InvalidInput(f"raw_input_contents: expected 1 entry (one per input), "
                               f"received {len(request.raw_input_contents)}")
        if tensor.HasField("contents"):
            raise InvalidInput("inputs[0].contents: expected no typed contents when raw_input_contents is used, "
                               "received both")
        return tensor_from_bytes(request.raw_input_contents[0], tensor.shape, spec, fields, reject_non_finite)
    contents = tensor.contents
    others = [f.name for f, _ in contents.ListFields() if f.name != "fp32_contents"]
    if others:
        raise InvalidInput(f"inputs[0].contents: expected fp32_contents for datatype FP32, received {others[0]}")
    return tensor_from_values(contents.fp32_contents, tensor.shape, spec,
                              Fields("inputs[0].shape", "inputs[0].contents.fp32_contents"), reject_non_finite)


def check_outputs(request: pb.ModelInferRequest, spec: ModelSpec) -> None:
    for i, output in enumerate(request.outputs):
        if output.name != spec.output_name:
            raise InvalidInput(f"outputs[{i}].name: expected {spec.output_name!r}, received {output.name!r}")


class KServeServicer(ExtensionsMixin, grpc_service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, registry: ModelRegistry, config: ServerConfig, metrics: Metrics, control: ModelControl,
                 gate: ThreadGate | None = None):
        self.registry = registry
        self.gate = gate or ThreadGate()
        self.config = config
        self.metrics = metrics
        self.statistics = metrics.statistics
        self.control = control
        self.inference = Inference(registry)
        self._encoders: dict[tuple[str, int, str], RawInferReplyEncoder] = {}

    async def ServerLive(self, request, context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.registry.lifecycle.serving and self.registry.ready())

    async def ServerMetadata(self, request, context) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=self.extensions())

    async def ModelReady(self, request: pb.ModelReadyRequest, context) -> pb.ModelReadyResponse:
        try:
            _, served = self.inference.lookup(request.name, request.version)
        except Exception as exc:
            await abort(context, exc)
        return pb.ModelReadyResponse(ready=served is not None and served.ready)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context) -> pb.ModelMetadataResponse:
        try:
            model, _ = self.inference.lookup(request.name, request.version)
            if model.spec is None:
                raise ModelNotReady(f"model {model.name!r} is not ready: {model.reason}")
        except Exception as exc:
            await abort(context, exc)
        return model_metadata(model)

    def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.ServicerContext) -> pb.ModelInferResponse | bytes:
        """On the handler thread (service.grpc_transport); a raw reply comes encoded (service.replies)."""
        with self.metrics.track("kserve") as tracker, self.gate:
            try:
                result = self.inference.infer_blocking(self._decode(request), time_remaining(context), tracker,
                                                       self.gate, context.add_callback)
                context.set_trailing_metadata(((TIMING_HEADER, result.timing.header()),))
                if request.raw_input_contents:
                    return self._raw_encoder(result).encode(request.id, result.outputs.raw)
                return infer_reply(request, result)
            except Exception as exc:
                context.abort(*failed(exc, tracker))

    def _raw_encoder(self, result: InferResult) -> RawInferReplyEncoder:
        """The served version's raw reply encoder (service.replies), made once per version and output name."""
        key = (result.served.model, result.served.version, result.spec.output_name)
        encoder = self._encoders.get(key)
        if encoder is None:
            encoder = self._encoders[key] = RawInferReplyEncoder(*key)
        return encoder

    def _decode(self, request: pb.ModelInferRequest) -> InferRequest:
        """The request as the request path takes it; its input is checked once the model is known."""

        def decode(spec: ModelSpec, served: ServedVersion) -> np.ndarray:
            x = infer_input(request, spec, self.config.reject_non_finite)
            check_outputs(request, spec)
            return x

        return InferRequest(request.model_name, decode, request.model_version, request_timeout(request),
                            request_priority(request), request.id)


def infer_reply(request: pb.ModelInferRequest, result: InferResult) -> pb.ModelInferResponse:
    scores = result.outputs.raw
    reply = pb.ModelInferResponse(model_name=result.served.model, model_version=str(result.served.version),
                                  id=request.id)
    output = reply.outputs.add(name=result.spec.output_name, datatype="FP32", shape=scores.shape)
    if request.raw_input_contents:
        reply.raw_output_contents.append(np.ascontiguousarray(scores, dtype="<f4").tobytes())
    else:
        output.contents.fp32_contents.extend(scores.ravel().tolist())
    return reply


def model_metadata(model: ServedModel) -> pb.ModelMetadataResponse:
    spec = model.spec
    Tensor = pb.ModelMetadataResponse.TensorMetadata
    reply = pb.ModelMetadataResponse(
        name=model.name, versions=[str(v) for v in sorted(model.versions) if model.versions[v].ready],
        platform=PLATFORM,
        inputs=[Tensor(name=spec.input_name, datatype="FP32", shape=[-1, *spec.input_shape])],
        outputs=[Tensor(name=spec.output_name, datatype="FP32", shape=[-1, *spec.output_shape])])
    if spec.trained is not None:
        reply.trained = spec.trained
    return reply
