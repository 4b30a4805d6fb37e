"""HTTP/REST (binary and JSON tensors) against gRPC, one server, one run: requests/s and p50 for
cifar-tiny single images at 1 and 64 requests in flight, written to docs/BENCHMARKS.md ("http").

Every API loads the same server with ``python -m bench.load`` (its own process, closed loop);
the cells run in rounds, the API order reversed every other round, so that the drift of a shared
machine falls on every API alike. A cell's figure is the median over its rounds.

    python -m bench.http_vs_grpc --duration 5 --rounds 3
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


from bench import ROOT
from bench.launcher import launch_server
from bench.report import machine, write_section

MODEL = "cifar-tiny"
APIS = (("gRPC KServe ModelInfer (raw tensors)", "grpc", ["--api", "kserve"]),
        ("gRPC convnet.v1 Classify", "grpc", ["--api", "classify"]),
        ("HTTP KServe infer, binary tensors", "http", ["--api", "http", "--http-data", "binary"]),
        ("HTTP KServe infer, JSON tensors", "http", ["--api", "http", "--http-data", "json"]))
CONCURRENCIES = (1, 64)


def bench(port: int, api_args: list[str], concurrency: int, duration: float) -> dict:
    command = [sys.executable, "-m", "bench.load", "--target", f"127.0.0.1:{port}", "--model", MODEL,
               *api_args, "-c", str(concurrency), "--duration", str(duration), "--warmup", "1", "--json"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=duration + 120)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr}")
    return json.loads(result.stdout)


def measure(models: Path, duration: float, rounds: int) -> dict[tuple[str, int], list[dict]]:
    with tempfile.TemporaryDirectory() as scratch:
        server = launch_server(Path(scratch), "--log-level", "warning", models=models, timeout=120)
        runs: dict[tuple[str, int], list[dict]] = {}
        try:
            for r in range(rounds):
                order = APIS if r % 2 == 0 else APIS[::-1]
                for concurrency in CONCURRENCIES:
                    for name, transport, api_args in order:
                        port = server.http_port if transport == "http" else server.port
                        runs.setdefault((name, concurrency), []).append(bench(port, api_args, concurrency, duration))
                        print(f"round {r + 1}: {name}, c={concurrency}: "
                              f"{runs[name, concurrency][-1]['requests_per_s']:.0f} requests/s", flush=True)
        finally:
            server.stop()
    return runs


def table(runs: dict[tuple[str, int], list[dict]], duration: float, rounds: int) -> str:
    lines = [
        "## HTTP/REST against gRPC",
        "",
        f"`python -m bench.http_vs_grpc --duration {duration:g} --rounds {rounds}`: one server (default settings), "
        f"{MODEL}, one image per request, closed loop from `python -m bench.load` in its own process, "
        f"{duration:g} s per cell after 1 s of warm-up, {rounds} rounds (API order reversed every other round); "
        "median of the rounds, the rounds' range in brackets; *client CPU*: the load generator's CPU time over "
        "the run (100 % = one core). Machine: " + machine() + ".",
        "",
        "| API | c | requests/s | p50 ms | p99 ms | vs gRPC KServe | client CPU | request bytes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for concurrency in CONCURRENCIES:
        base = statistics.median(r["requests_per_s"] for r in runs[APIS[0][0], concurrency])
        for name, _, _ in APIS:
            cell = runs[name, concurrency]
            rps = [r["requests_per_s"] for r in cell]
            p50 = [r["latency_ms"]["p50"] for r in cell]
            p99 = statistics.median(r["latency_ms"]["p99"] for r in cell)
            cpu = statistics.median(r["client_cpu"] for r in cell)
            lines.append(f"| {name} | {concurrency} | {statistics.median(rps):,.0f} [{min(rps):,.0f}-{max(rps):,.0f}] "
                         f"| {statistics.median(p50):.2f} [{min(p50):.2f}-{max(p50):.2f}] | {p99:.2f} "
                         f"| {statistics.median(rps) / base:.2f} | {cpu:.0%} | {cell[0]['request_bytes']:,} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per cell (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every cell (default 3)")
    parser.add_argument("--no-write", action="store_true", help="print the table instead of writing the doc")
    args = parser.parse_args(argv)
    text = table(measure(args.models, args.duration, args.rounds), args.duration, args.rounds)
    print(text)
    if not args.no_write:
        print(f"wrote {write_section('http', text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
