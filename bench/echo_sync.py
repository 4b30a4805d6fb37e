"""A bare synchronous gRPC echo server: grpcio's ``grpc.server`` with a thread pool, no work at all.

It answers KServe v2 ModelInfer with the reply the real server would send for the request's model
and image count (bench/echo.py's cached replies, sent as bytes), and grpc.health.v1 with SERVING.
No validation, no batching, no compute: the floor of any grpcio server on a core, the reference of
the issue's "ours / bare sync grpc echo" cell (bench/vs_triton.py).

    python -m bench.echo_sync [--models DIR] [--host H] [--port P] [--threads 8] [--ready-file FILE]
"""
from __future__ import annotations

import argparse
import signal
import threading
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from bench.echo import EchoReplies, load_specs
from service.config import ServerConfig
from service.generated.inference import grpc_service_pb2 as kpb
from service.connections import grpc_options
from service.summary import address, write_ready_file

SERVICE = "inference.GRPCInferenceService"


def infer_handler(replies: EchoReplies):
    """ModelInfer: the cached reply for (model, images, raw) as bytes, or NOT_FOUND for an unknown model."""

    def infer(request: kpb.ModelInferRequest, context: grpc.ServicerContext) -> bytes:
        spec = replies.specs.get(request.model_name)
        if spec is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"model_name: no model {request.model_name!r} in the echo server")
        images = request.inputs[0].shape[0] if request.inputs and request.inputs[0].shape else 1
        return replies.infer(spec, max(images, 1), bool(request.raw_input_contents))

    return grpc.unary_unary_rpc_method_handler(infer, request_deserializer=kpb.ModelInferRequest.FromString)


def start(models: Path, host: str = "127.0.0.1", port: int = 0, threads: int = 8) -> tuple[grpc.Server, int]:
    """A started synchronous echo server (the real server's gRPC options) and its port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads),
                         options=grpc_options(ServerConfig().max_message_bytes))
    replies = EchoReplies(load_specs(models))
    handlers = grpc.method_handlers_generic_handler(SERVICE, {"ModelInfer": infer_handler(replies)})
    server.add_generic_rpc_handlers([handlers])
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = server.add_insecure_port(address(host, port))
    server.start()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    return server, bound


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.echo_sync", description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=Path("models"), help="model repository whose replies to mimic")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001, help="gRPC port (0 = any free port)")
    p.add_argument("--threads", type=int, default=8, help="handler threads (default 8)")
    p.add_argument("--ready-file", type=Path, help="write {pid, port} as JSON here once serving")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error(f"--threads: expected an integer >= 1, got {args.threads}")
    server, port = start(args.models, args.host, args.port, args.threads)
    print(f"synchronous echo server on {args.host}:{port} ({args.threads} handler threads)", flush=True)
    return serve_until_stopped(server, port, args.ready_file)


def serve_until_stopped(server: grpc.Server, port: int, ready_file: Path | None) -> int:
    """Write the ready file, block until SIGINT or SIGTERM, stop the started ``server``; exit status 0."""
    if ready_file is not None:
        write_ready_file(ready_file, port=port)
    stop = threading.Event()
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda *_: stop.set())
    stop.wait()
    server.stop(1).wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
