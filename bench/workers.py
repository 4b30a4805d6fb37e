"""Workers across cores: images/s of ``serve --workers 2`` against ``--workers 1``, measured with h2load.

    python -m bench.workers [--rounds 5] [--duration 6] [--shapes 16x4,64x1] [--model cifar-tiny]
                            [--serve-args '--max-queue-delay-ms 1']

Starts one server of each kind on free ports (unpinned: both may use both cores), then, round after
round and shape after shape, replays one KServe ModelInfer request (1 image) with h2load (Debian
``nghttp2-client``, a C client) against each in turn, alternating which goes first. A shape CxM is
C HTTP/2 connections with M calls in flight on each: the kernel spreads connections, not calls,
over the workers. It counts HTTP 200, not grpc-status, so each run also reads the server's own
/metrics and fails if any call was answered other than OK (or CANCELLED: h2load's last calls).
Prints one line per run (with the CPU time the server's processes took over it, in cores, and the
load average: the machine may be shared), then per shape the medians and the median ratio
(2 workers / 1 worker) of the rounds, with their ranges.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from bench import h2load as h2load_requests
from bench import scrape
from bench.h2load import MODEL_INFER
from bench.launcher import MODELS, ServerProcess, launch_server
from bench.processes import cpu_seconds as process_cpu_seconds
from bench.report import spread


def grpc_body(model: str, shape: tuple[int, ...]) -> bytes:
    """One ModelInfer of one random image, as one length-prefixed gRPC message (bench.h2load's)."""
    return h2load_requests.grpc_request(model, h2load_requests.images(shape, 1)).body


def h2load(port: int, body_file: Path, clients: int, streams: int, duration: float) -> float:
    """Requests/s that h2load measured over ``duration`` seconds after a 1 s warm-up."""
    command = ["h2load", "-c", str(clients), "-m", str(streams), "-D", f"{duration:g}", "--warm-up-time", "1",
               "-H", "content-type: application/grpc", "-H", "te: trailers", "-d", str(body_file),
               f"http://127.0.0.1:{port}{MODEL_INFER}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60)
    out = done.stdout + done.stderr
    found = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)
    failed = re.search(r"requests: .* (\d+) failed, (\d+) errored", out)
    if found is None or failed is None or failed.groups() != ("0", "0"):
        raise RuntimeError(f"h2load failed:\n{out[-2000:]}")
    return float(found.group(1))


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes ``pids`` so far, in seconds."""
    return sum(process_cpu_seconds(pid) for pid in pids)


def children_cpu_seconds() -> float:
    """User + system CPU time of this process's finished children (h2load runs), in seconds."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def server_pids(server: ServerProcess, workers: int) -> list[int]:
    """The server's process and, for a pool, its workers (as its /health/ready lists them)."""
    if workers == 1:
        return [server.pid]
    health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/health/ready").read())
    return [server.pid, *(w["pid"] for w in health["workers"])]


def batch_totals(server: ServerProcess, model: str) -> tuple[float, float]:
    """Images batched and batches run so far for ``model`` (summed over a pool's workers)."""
    text = server.metrics_text()
    return (scrape.metric(text, "convnet_batch_size_sum", model=model),
            scrape.metric(text, "convnet_batch_size_count", model=model))


def failed(server: ServerProcess, model: str) -> float:
    """Calls of ``model`` answered other than OK or CANCELLED (h2load cancels the calls in flight
    when its time is up: at most clients x streams per run)."""
    text = server.metrics_text()
    return scrape.metric(text, "convnet_requests_total", model=model) - sum(
        scrape.metric(text, "convnet_requests_total", model=model, code=code) for code in ("OK", "CANCELLED"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=int, default=6, help="seconds measured per run (after 1 s warm-up)")
    p.add_argument("--shapes", default="16x4,64x1", help="h2load connections x calls in flight per connection")
    p.add_argument("--model", default="cifar-tiny")
    p.add_argument("--models", type=Path, default=MODELS)
    p.add_argument("--serve-args", default="", help="more flags for both servers, e.g. '--max-queue-delay-ms 1'")
    args = p.parse_args(argv)
    if shutil.which("h2load") is None:
        p.error("h2load not found: install Debian nghttp2-client (scripts/install.sh)")
    shapes = [tuple(int(n) for n in shape.split("x")) for shape in args.shapes.split(",")]
    shape = tuple(json.loads((args.models / args.model / "config.json").read_text())["input"]["shape"])
    work = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    body = work / "request.bin"
    body.write_bytes(grpc_body(args.model, shape))
    servers: dict[int, ServerProcess] = {}
    rates: dict[tuple, list[float]] = {}
    used: dict[tuple, list[float]] = {}
    batched: dict[tuple, list[float]] = {}
    try:
        for n in (1, 2):
            servers[n] = launch_server(work, "--workers", str(n), *args.serve_args.split(), models=args.models,
                                       name=f"workers-{n}", env={"CONVNET_DRAIN_S": "0"})
        pids = {n: server_pids(server, n) for n, server in servers.items()}
        for round_ in range(args.rounds):
            for clients, streams in shapes:
                for n in ((1, 2) if round_ % 2 == 0 else (2, 1)):
                    batches = batch_totals(servers[n], args.model)
                    cpu, client_cpu = cpu_seconds(pids[n]), children_cpu_seconds()
                    started = time.monotonic()
                    rate = h2load(servers[n].port, body, clients, streams, args.duration)
                    elapsed = time.monotonic() - started
                    cores = (cpu_seconds(pids[n]) - cpu) / elapsed
                    client_cores = (children_cpu_seconds() - client_cpu) / elapsed
                    images, count = (a - b for a, b in zip(batch_totals(servers[n], args.model), batches))
                    if failed(servers[n], args.model):
                        raise RuntimeError(f"--workers {n}: calls failed:\n{servers[n].metrics_text()}")
                    rates.setdefault((clients, streams, n), []).append(rate)
                    used.setdefault((clients, streams, n), []).append(cores)
                    batched.setdefault((clients, streams, n), []).append(images / max(count, 1))
                    print(f"round {round_ + 1} {clients}x{streams} --workers {n}: {rate:,.0f} images/s, "
                          f"server processes on {cores:.2f} cores ({rate / cores:,.0f} images per CPU second), "
                          f"{images / max(count, 1):.1f} images per batch, h2load on {client_cores:.2f}; "
                          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.model}, 1 image per call, {args.rounds} interleaved rounds of {args.duration} s "
          f"(medians, ranges in parentheses):")
    for clients, streams in shapes:
        one, two = rates[clients, streams, 1], rates[clients, streams, 2]
        ratios = [b / a for a, b in zip(one, two)]
        per_cpu = {n: [r / c for r, c in zip(rates[clients, streams, n], used[clients, streams, n])] for n in (1, 2)}
        print(f"  h2load -c {clients} -m {streams}: 1 worker {spread(one, ',.0f')} images/s on "
              f"{spread(used[clients, streams, 1], '.2f')} cores ({spread(per_cpu[1], ',.0f')} per CPU second), "
              f"2 workers {spread(two, ',.0f')} on {spread(used[clients, streams, 2], '.2f')} cores "
              f"({spread(per_cpu[2], ',.0f')} per CPU second); 2/1 {spread(ratios, '.2f')}; images per batch "
              f"{spread(batched[clients, streams, 1], '.1f')} and {spread(batched[clients, streams, 2], '.1f')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
