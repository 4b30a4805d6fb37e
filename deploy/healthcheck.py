"""Container health probe: asks the server's grpc.health.v1 service and exits 0 only on SERVING.

Docker's HEALTHCHECK and compose's `healthcheck:` run it inside the container, so it needs
nothing beyond the packages the service already installs (grpcio, grpcio-health-checking).
"""
from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(target: str, service: str = "", timeout: float = 2.0) -> tuple[bool, str]:
    """Return (healthy, what was seen) for one Check call: the status name or the gRPC error."""
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as err:
            return False, f"{err.code().name}: {err.details()}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="healthcheck.py", description=__doc__)
    parser.add_argument("--target", default="127.0.0.1:8001", help="gRPC address HOST:PORT")
    parser.add_argument("--service", default="",
                        help="health service name: '' for the whole server, or a model name")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for the answer")
    args = parser.parse_args(argv)
    healthy, seen = check(args.target, args.service, args.timeout)
    name = args.service or "server"
    print(f"{name} at {args.target}: {seen}", file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())
