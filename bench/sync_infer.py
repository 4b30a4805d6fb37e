"""KServe ModelInfer on grpcio's synchronous ``grpc.server``: the transport measurement of issue 23.

The same registry, batch scheduler, onnxruntime sessions, input checks and reply as the server,
but each call runs on a handler thread that blocks on the scheduler (``BatchQueue.submit_blocking``)
instead of a grpc.aio coroutine. No interceptors (token, drain, limits), no other API: it measures
what the synchronous transport would give this request path, next to ``bench.echo`` (grpc.aio) and
a bare synchronous echo on the same core.

    python -m bench.sync_infer [--models DIR] [--port P] [--threads N] [--gate] [--metrics-port P] [--ready-file FILE]
"""
from __future__ import annotations

import argparse
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from bench.echo_sync import serve_until_stopped
from service.batching import ThreadGate
from service.config import ServerConfig
from service.generated.inference import grpc_service_pb2 as kpb
from service.infer import InferResult, parse_version
from service.metrics import Metrics
from service.models import ModelRegistry
from service.connections import grpc_options
from service.summary import address
from service.servicers.kserve import check_outputs, infer_input, infer_reply, request_priority, request_timeout
from service.servicers.status import status_of
from service.timing import RequestTiming

SERVICE = "inference.GRPCInferenceService"
NO_DEADLINE_S = 1e6


def infer_handler(registry: ModelRegistry, reject_non_finite: bool, gate: ThreadGate | None):
    """ModelInfer as a blocking handler: resolve, check, wait for the batch, encode. With ``gate``
    the thread counts as working except while it waits in the queue."""

    def infer(request: kpb.ModelInferRequest, context: grpc.ServicerContext) -> bytes:
        if gate is None:
            return answer(request, context)
        gate.enter()
        try:
            return answer(request, context)
        finally:
            gate.leave()

    def answer(request: kpb.ModelInferRequest, context: grpc.ServicerContext) -> bytes:
        try:
            served = registry.resolve(request.model_name, parse_version(request.model_version))
            spec = registry.get(served.model).spec
            x = infer_input(request, spec, reject_non_finite)
            check_outputs(request, spec)
            remaining = context.time_remaining()  # without a deadline: a huge number, not None
            if remaining is not None and remaining > NO_DEADLINE_S:
                remaining = None
            timeout = request_timeout(request)
            if remaining is not None:
                timeout = remaining if timeout is None else min(timeout, remaining)
            timing = RequestTiming()
            outputs = served.queue.submit_blocking(x, timeout, request_priority(request), timing,
                                                   None if gate is None else gate.leave)
            return infer_reply(request, InferResult(outputs, served, spec, timing)).SerializeToString()
        except Exception as exc:
            context.abort(*status_of(exc))

    return grpc.unary_unary_rpc_method_handler(infer, request_deserializer=kpb.ModelInferRequest.FromString,
                                               response_serializer=lambda reply: reply)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sync_infer", description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=Path("models"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001, help="gRPC port (0 = any free port)")
    p.add_argument("--threads", type=int, default=64, help="handler threads (a batch holds at most this many calls)")
    p.add_argument("--gate", action="store_true",
                   help="batches wait until every handler thread is blocked in the queue (service.batching.ThreadGate)")
    p.add_argument("--metrics-port", type=int, default=0, help="serve /metrics here (0: no metrics)")
    p.add_argument("--ready-file", type=Path)
    args = p.parse_args(argv)
    config = ServerConfig(models=args.models)
    metrics = Metrics()
    registry = ModelRegistry.load(config, metrics)
    if args.metrics_port:
        metrics.serve(args.host, args.metrics_port)
    queues = [v.queue for m in registry.models.values() for v in m.versions.values() if v.queue is not None]
    gate = ThreadGate(queues) if args.gate else None
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.threads),
                         options=grpc_options(config.max_message_bytes))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        SERVICE, {"ModelInfer": infer_handler(registry, config.reject_non_finite, gate)})])
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port(address(args.host, args.port))
    server.start()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    print(f"synchronous ModelInfer on {args.host}:{port} ({args.threads} handler threads)", flush=True)
    return serve_until_stopped(server, port, args.ready_file)


if __name__ == "__main__":
    raise SystemExit(main())
