"""Server settings side by side: the same checkout started with different flags (or the bare
synchronous grpcio echo), interleaved rounds of h2load against each, requests/s and CPU per call.

    python -m bench.variants [--model cifar-tiny] [--concurrency 64] [--rounds 3] [--duration 3]
        VARIANT [VARIANT ...]

A VARIANT is one string of ``serve`` flags (``"--grpc-threads 16"``, ``""`` for the defaults) or
``echo`` (``python -m bench.echo_sync``). Each server is pinned to ``--server-cores``, h2load
(one HTTP/2 connection, C streams, one KServe ModelInfer of one image) to ``--client-cores``;
the order of the variants is reversed every other round. CPU per call is the server process's
user + system time over the measured window divided by the calls answered: on a shared machine it
moves less than requests/s.
"""
from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

from bench.h2load import grpc_request, images, run
from bench.launcher import MODELS, ServerProcess, launch, launch_server
from bench.processes import cores_error, cpu_seconds, parse_cores
from bench.report import spread
from service.repository import read_spec


def start(variant: str, models: Path, workdir: Path, cores: frozenset[int]) -> ServerProcess:
    if variant == "echo":
        return launch([sys.executable, "-m", "bench.echo_sync", "--models", str(models), "--port", "0"],
                      workdir, "echo", cores=cores)
    return launch_server(workdir, "--intra-op-threads", "1", "--instances", "1", "--log-level", "warning",
                         *shlex.split(variant), models=models, cores=cores)


def measure(args) -> dict[str, list[tuple[float, float, float]]]:
    """Per variant, per round: (requests/s, CPU ms per call, p50 ms)."""
    spec = read_spec(args.models / args.model)
    request = grpc_request(args.model, images(spec.example_shape(), 1), spec.input_name, spec.output_name)
    results: dict[str, list[tuple[float, float, float]]] = {v: [] for v in args.variants}
    with tempfile.TemporaryDirectory(prefix="variants-") as tmp:
        for r in range(args.rounds):
            for i, variant in enumerate(args.variants if r % 2 == 0 else args.variants[::-1]):
                server = start(variant, args.models, Path(tmp) / f"{r}-{i}", args.server_cores)
                try:
                    run(request, server.target, args.concurrency, 1.0, 0.5, args.client_cores)  # warm-up
                    cpu = cpu_seconds(server.process.pid)
                    h = run(request, server.target, args.concurrency, args.duration, 0.0, args.client_cores)
                    results[variant].append((h.requests_per_s, (cpu_seconds(server.process.pid) - cpu) * 1e3 / max(h.done, 1),
                                             h.latency_ms.get("p50", float("nan"))))
                finally:
                    server.stop()
                print(f"round {r + 1}/{args.rounds} {variant or '(defaults)'}: {results[variant][-1][0]:,.0f} req/s, "
                      f"{results[variant][-1][1]:.3f} ms CPU per call", flush=True)
    return results


def table(args, results: dict[str, list[tuple[float, float, float]]]) -> str:
    first = args.variants[0]
    lines = [f"{args.model}, 1 image per call, {args.concurrency} in flight, {args.rounds} interleaved rounds of "
             f"{args.duration:g} s (medians; ranges; the ratio is the median of the rounds' ratios to the first variant)",
             "", "| variant | req/s | CPU ms per call | p50 ms | / first |", "|---|---|---|---|---|"]
    for variant, rows in results.items():
        ratios = [a[0] / b[0] for a, b in zip(rows, results[first])]
        lines.append(f"| {variant or '(defaults)'} | {spread([r[0] for r in rows], ',.0f')} "
                     f"| {statistics.median(r[1] for r in rows):.3f} | {statistics.median(r[2] for r in rows):.2f} "
                     f"| {spread(ratios, '.2f')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.variants", description=__doc__.splitlines()[0])
    p.add_argument("variants", nargs="+", metavar="VARIANT", help='serve flags in one string, "" or echo')
    p.add_argument("--model", default="cifar-tiny")
    p.add_argument("--models", type=Path, default=MODELS)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=3.0, help="measured seconds per run")
    p.add_argument("--server-cores", type=parse_cores, default=frozenset({0}))
    p.add_argument("--client-cores", type=parse_cores, default=frozenset({1}))
    args = p.parse_args(argv)
    why = cores_error(args.server_cores, args.client_cores)
    if why:
        p.error(why)
    print(table(args, measure(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
