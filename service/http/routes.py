"""The KServe v2 REST endpoints: health, server and model metadata, model readiness and infer.

Infer takes the model's one input as FP32 (JSON ``data``, flat or nested, or binary) or as BYTES
(binary; each element an encoded PNG or JPEG that the server decodes and preprocesses as
config.json says, as the own API's ``images`` are), and answers the ``scores`` output as JSON or
binary. ``Server-Timing: infer;dur=<ms>, queue;dur=.., compute;dur=.., total;dur=..`` gives the time
the server spent on the request and where it went in the batch queue (service.timing).
"""
from __future__ import annotations

import asyncio
import functools
import time
from concurrent.futures import Executor

import numpy as np
import orjson
from aiohttp import web

from .. import __version__
from ..config import ServerConfig
from ..control import ModelControl
from ..errors import InvalidInput, ModelNotReady, RequestTooLarge
from ..infer import Inference, InferRequest
from ..inputs import Fields, decode_images, tensor_from_bytes, tensor_from_values
from ..metrics import Metrics
from ..models import ModelRegistry, ServedModel, ServedVersion
from ..repository import ModelSpec
from ..servicers.extensions import advertised, select_statistics
from ..servicers.kserve import PLATFORM, SERVER_NAME
from .body import read_body
from .classification import requested_classes, top_classes
from .codec import HEADER_LENGTH, InferBody, byte_elements, encode_reply, json_values
from .parsing import INLINE_BYTES, BodyParser
from .status import RETRY_AFTER_S, http_error

EXTENSIONS = ["binary_tensor_data", "classification"]
API = "http"


def error_response(status: int, message: str, **extra) -> web.Response:
    """The protocol's error body ``{"error": message}``; Retry-After on 429 and 503."""
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status in (429, 503) else {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return web.json_response({"error": message, **extra}, status=status, headers=headers)


def tensor_metadata(name: str, shape: tuple[int, ...]) -> dict:
    return {"name": name, "datatype": "FP32", "shape": [-1, *shape]}


def model_metadata(model: ServedModel) -> dict:
    """What gRPC ModelMetadata answers, as the REST API spells it."""
    spec = model.spec
    return {"name": model.name, "versions": [str(v) for v in sorted(model.versions) if model.versions[v].ready],
            "platform": PLATFORM, "inputs": [tensor_metadata(spec.input_name, spec.input_shape)],
            "outputs": [tensor_metadata(spec.output_name, spec.output_shape)]}


class Routes:
    """The handlers, over the server's registry, configuration, metrics, decoder threads and model
    control (the gRPC servicer's own ModelControl, so both transports load and unload alike)."""

    def __init__(self, registry: ModelRegistry, config: ServerConfig, metrics: Metrics, decoder: Executor,
                 control: ModelControl):
        self.registry = registry
        self.config = config
        self.metrics = metrics
        self.decoder = decoder
        self.control = control
        self.inference = Inference(registry)
        self.parser = BodyParser(decoder)

    def add_to(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/v2/health/live", self.live)
        r.add_get("/v2/health/ready", self.ready)
        r.add_get("/v2", self.server_metadata)
        r.add_get("/v2/models/stats", self.stats)  # before /v2/models/{model}, which it would match
        for base in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
            r.add_get(base, self.model_metadata)
            r.add_get(base + "/ready", self.model_ready)
            r.add_get(base + "/stats", self.stats)
            r.add_post(base + "/infer", self.infer)
        r.add_post("/v2/repository/index", self.repository_index)
        r.add_post("/v2/repository/models/{model}/load", self.load)
        r.add_post("/v2/repository/models/{model}/unload", self.unload)
        app.on_cleanup.append(self._close)

    async def _close(self, app: web.Application) -> None:
        self.parser.close()

    async def _body(self, request: web.Request) -> bytes:
        return await read_body(request, self.config.max_message_bytes, self.config.http_read_timeout_s, self.decoder)

    async def live(self, request: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def ready(self, request: web.Request) -> web.Response:
        ready = self.registry.lifecycle.serving and self.registry.ready()
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    async def server_metadata(self, request: web.Request) -> web.Response:
        return web.json_response({"name": SERVER_NAME, "version": __version__,
                                  "extensions": EXTENSIONS + advertised(self.control)})

    async def stats(self, request: web.Request) -> web.Response:
        """Triton's statistics extension: ``{"model_stats": [...]}``, the figures gRPC ModelStatistics gives."""
        found = select_statistics(self.metrics.statistics, self.registry, request.match_info.get("model", ""),
                                  request.match_info.get("version", ""))
        return web.json_response({"model_stats": [s.to_dict() for s in found]})

    async def repository_index(self, request: web.Request) -> web.Response:
        """Triton's model repository index: a JSON array of ``{name, version, state, reason}``."""
        ready = (await self._control_body(request)).get("ready", False)
        if not isinstance(ready, bool):
            raise InvalidInput(f"ready: expected true or false, received {ready!r}")
        return web.json_response([{"name": e.name, "version": e.version, "state": e.state, "reason": e.reason}
                                  for e in self.control.index("", ready)])

    async def load(self, request: web.Request) -> web.Response:
        parameters = (await self._control_body(request)).get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise InvalidInput(f"parameters: expected a JSON object, received {type(parameters).__name__}")
        await self.control.load(request.match_info["model"], parameters=parameters)
        return web.Response()

    async def unload(self, request: web.Request) -> web.Response:
        await self._control_body(request)
        await self.control.unload(request.match_info["model"])
        return web.Response()

    async def _control_body(self, request: web.Request) -> dict:
        """The optional JSON object of a repository request (empty when there is no body)."""
        body = await self._body(request)
        if not body.strip():
            return {}
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"request body: expected a JSON object, received invalid JSON ({exc})") from None
        if not isinstance(parsed, dict):
            raise InvalidInput(f"request body: expected a JSON object, received {type(parsed).__name__}")
        return parsed

    def _lookup(self, request: web.Request):
        return self.inference.lookup(request.match_info["model"], request.match_info.get("version", ""))

    async def model_metadata(self, request: web.Request) -> web.Response:
        model, _ = self._lookup(request)
        if model.spec is None:
            raise ModelNotReady(f"model {model.name!r} is not ready: {model.reason}")
        return web.json_response(model_metadata(model))

    async def model_ready(self, request: web.Request) -> web.Response:
        model, served = self._lookup(request)
        ready = served is not None and served.ready and self.registry.lifecycle.serving
        body = {"name": model.name, "ready": ready}
        if not ready:
            body["error"] = (f"model {model.name!r} is not ready: "
                             + (served.reason if served is not None and served.reason else model.not_ready_reason
                                or "the server is stopping"))
        return web.json_response(body, status=200 if ready else 503)

    async def infer(self, request: web.Request) -> web.Response:
        """Read and parse the body, then the one request path (service.infer): decode, queue, encode."""
        start = time.perf_counter()
        name = request.match_info["model"]
        with self.metrics.track(API) as tracker:
            if name in self.registry.models:  # a body refused before the path runs still counts for its model
                tracker.model = name
            try:
                body = await self._body(request)
                parsed = await self.parser.parse(body, request.headers.get(HEADER_LENGTH))
                result = await self.inference.infer(InferRequest(
                    model=name, decode=functools.partial(self._input, parsed),
                    version=request.match_info.get("version", ""), timeout=parsed.timeout_s(),
                    priority=parsed.priority(), request_id=parsed.id or ""), tracker=tracker)
                scores = result.outputs.raw
                classes = requested_classes(parsed, result.spec.output_shape)
                data, headers = encode_reply(result.served.model, result.served.version, parsed.id,
                                             result.spec.output_name,
                                             top_classes(scores, classes, result.spec.labels) if classes else scores,
                                             parsed.binary_output)
            except Exception as exc:
                status, code, message = http_error(exc)
                tracker.code = code.name
                response = error_response(status, message)
                if status in (400, 408, 413, 499) and not request.content.at_eof():  # the body is not read to its end: the connection cannot be reused
                    response.force_close()
                return response
        headers["Server-Timing"] = f"infer;dur={(time.perf_counter() - start) * 1e3:.3f}, {result.timing.header()}"
        response = web.Response(body=data, headers=headers)
        if "Accept-Encoding" in request.headers:
            response.enable_compression()
        return response

    async def _input(self, parsed: InferBody, spec: ModelSpec, served: ServedVersion) -> np.ndarray:
        """The model's one input (FP32 values or bytes, or BYTES holding encoded images), the outputs checked."""
        check_outputs(parsed, spec)
        requested_classes(parsed, spec.output_shape)
        max_batch = served.batching.max_batch_size
        if len(parsed.inputs) != 1:
            raise InvalidInput(f"inputs: expected exactly 1 input ({spec.input_name!r}), received {len(parsed.inputs)}")
        tensor = parsed.inputs[0]
        if tensor.name != spec.input_name:
            raise InvalidInput(f"inputs[0].name: expected {spec.input_name!r}, received {tensor.name!r}")
        reject = self.config.reject_non_finite
        if tensor.shape and tensor.shape[0] > max_batch:  # before any value is converted
            raise RequestTooLarge(f"inputs[0].shape[0]: expected at most max_batch_size={max_batch} images, "
                                  f"received {tensor.shape[0]}")
        loop = asyncio.get_running_loop()
        if tensor.datatype == "FP32":
            if tensor.binary is not None:
                decode = functools.partial(tensor_from_bytes, tensor.binary, tensor.shape, spec,
                                           Fields("inputs[0].shape", "inputs[0] binary data"), reject)
                # the finiteness check grows with the body: off the loop when the body is large
                return decode() if len(tensor.binary) <= INLINE_BYTES else await loop.run_in_executor(self.decoder, decode)
            return tensor_from_values(json_values(tensor), tensor.shape, spec,
                                      Fields("inputs[0].shape", "inputs[0].data"), reject)
        if tensor.datatype == "BYTES":
            return await loop.run_in_executor(self.decoder, lambda: decode_images(
                byte_elements(tensor, max_batch), spec, "inputs[0] (encoded images)", self.config.max_image_pixels,
                max_batch))
        raise InvalidInput(f"inputs[0].datatype: expected 'FP32' (a tensor) or 'BYTES' (encoded images), "
                           f"received {tensor.datatype!r}")


def check_outputs(parsed: InferBody, spec: ModelSpec) -> None:
    for i, output in enumerate(parsed.outputs):
        if output["name"] != spec.output_name:
            raise InvalidInput(f"outputs[{i}].name: expected {spec.output_name!r}, received {output['name']!r}")
