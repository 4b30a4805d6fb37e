"""The processes of a serving benchmark: pinned servers and echo servers, and load runs against them.

``args`` is bench/serving.py's namespace: models, threads, server_cores, client_cores, duration, warmup.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from bench import h2load, scrape
from bench.launcher import ROOT, ServerProcess, launch, launch_server, on_cores


def parse_cores(spec: str) -> frozenset[int]:
    """CPU cores from a list such as ``0``, ``0-3`` or ``0,2,4-5`` (taskset's notation)."""
    cores: set[int] = set()
    for part in spec.split(","):
        bounds = re.fullmatch(r"\s*(\d+)(?:-(\d+))?\s*", part)
        if not bounds or int(bounds[2] or bounds[1]) < int(bounds[1]):
            raise ValueError(f"expected cores such as 0, 0-3 or 0,2,4-5, got {spec!r}")
        cores.update(range(int(bounds[1]), int(bounds[2] or bounds[1]) + 1))
    return frozenset(cores)


def cores_text(cores: frozenset[int]) -> str:
    """The cores as written for a reader: ``core 0``, ``cores 0-3`` or ``cores 0, 2, 5``."""
    ordered = sorted(cores)
    if len(ordered) == 1:
        return f"core {ordered[0]}"
    if ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"cores {ordered[0]}-{ordered[-1]}"
    return "cores " + ", ".join(map(str, ordered))


def cores_error(server: frozenset[int], client: frozenset[int]) -> str | None:
    """Why these server and client cores cannot be used (overlapping, or not this process's), or None."""
    usable = os.sched_getaffinity(0)
    if server & client or not server | client <= usable:
        return (f"--server-cores/--client-cores: expected two disjoint sets of the cores {sorted(usable)}, "
                f"got {sorted(server)} and {sorted(client)}")
    return None


def start_server(args, workdir: Path, name: str, *flags: str, models: Path | None = None, **where) -> ServerProcess:
    """A server on the server cores with one instance of ``args.threads`` intra-op threads, serving
    ``models`` (default ``args.models``); ``where`` (python, cwd, http_port) starts another checkout's."""
    return launch_server(workdir, "--intra-op-threads", str(args.threads), "--instances", "1", "--log-level", "warning",
                         *flags, models=models or args.models, cores=args.server_cores, name=name, timeout=120,
                         **where)


def start_echo(args, workdir: Path, name: str = "echo", *flags: str) -> ServerProcess:
    """The echo server (bench/echo.py) on the server cores."""
    command = [sys.executable, "-m", "bench.echo", "--models", str(args.models), "--port", "0", *flags]
    return launch(command, workdir, name, cores=args.server_cores, timeout=120)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(args, port: int, model: str, batch: int, concurrency: int, pid: int | None = None,
         api: str = "classify") -> dict:
    """One ``python -m bench.load --json`` run, pinned to the client core; adds the server's CPU use."""
    command = [sys.executable, "-m", "bench.load", "--json", "--target", f"127.0.0.1:{port}", "--api", api,
               "--model", model, "--batch", str(batch), "--concurrency", str(concurrency),
               "--duration", str(args.duration), "--warmup", str(args.warmup)]
    for attempt in (1, 2):  # once more after a failed load process (grpc's poller has died under it once)
        before = cpu_seconds(pid) if pid else 0.0
        done = subprocess.run(on_cores(command, args.client_cores), cwd=ROOT, capture_output=True, text=True,
                              timeout=args.duration + args.warmup + 120)
        if done.returncode == 0:
            break
        if attempt == 2 or (pid and not Path(f"/proc/{pid}").exists()):  # twice, or the server is gone
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        print(f"load process failed (exit {done.returncode}), once more: {done.stderr.strip()[-300:]}", flush=True)
    result = json.loads(done.stdout)
    if pid:
        total = args.duration + args.warmup
        result["server_cpu"] = (cpu_seconds(pid) - before) / total
    return result


def answered(metrics_port: int, model: str) -> tuple[float, float]:
    """(OK, failed) requests of ``model`` so far, by the server's convnet_requests_total."""
    text = scrape.scrape(metrics_port)
    ok = scrape.metric(text, "convnet_requests_total", model=model, code="OK")
    return ok, scrape.metric(text, "convnet_requests_total", model=model) - ok


def load_h2load(args, server: ServerProcess, model: str, batch: int, concurrency: int) -> dict:
    """One h2load run of KServe ModelInfer (``batch`` images of ``args.models``' input shape per
    request, ``concurrency`` streams on one connection) on the client cores, in ``load``'s terms.
    Errors: failed calls, answers the server did not count OK (h2load sees a gRPC error as HTTP 200)
    and server failures beyond the ``concurrency`` calls h2load abandons when it stops."""
    from service.repository import read_spec

    spec = read_spec(args.models / model)
    request = h2load.grpc_request(model, h2load.images(spec.example_shape(), batch), spec.input_name,
                                  spec.output_name)
    before_cpu, before = cpu_seconds(server.pid), answered(server.metrics_port, model)
    r = h2load.run(request, server.target, concurrency, args.duration, args.warmup, args.client_cores)
    after = answered(server.metrics_port, model)
    ok, failed = after[0] - before[0], after[1] - before[1]
    errors = r.failed + r.errored + max(0, r.done - r.failed - r.errored - ok) + max(0, failed - concurrency)
    return {"requests_per_s": r.requests_per_s, "images_per_s": r.images_per_s, "latency_ms": r.latency_ms,
            "error_count": int(errors), "client": "h2load",
            "server_cpu": (cpu_seconds(server.pid) - before_cpu) / (args.duration + args.warmup)}


SERVER_TOTALS = {"convnet_images_total": "images", "convnet_batches_total": "batches",
                 "convnet_batch_compute_seconds_sum": "compute_s"}


def server_totals(metrics_port: int, model: str) -> dict[str, float]:
    """What the server has computed for ``model`` so far, from /metrics: images, batches, compute seconds."""
    return scrape.totals(scrape.scrape(metrics_port), SERVER_TOTALS, model=model)


def served(args, server: ServerProcess, model: str, batch: int, concurrency: int) -> dict:
    """One load run against the server (``python -m bench.load``, or h2load where ``args.client``
    says so), with the batches it formed meanwhile: mean size, compute ms per batch."""
    before = server_totals(server.metrics_port, model)
    result = (load_h2load(args, server, model, batch, concurrency) if getattr(args, "client", "python") == "h2load"
              else load(args, server.port, model, batch, concurrency, server.pid))
    after = server_totals(server.metrics_port, model)
    batches = max(after["batches"] - before["batches"], 1)
    result["mean_batch"] = (after["images"] - before["images"]) / batches
    result["batch_compute_ms"] = 1e3 * (after["compute_s"] - before["compute_s"]) / batches
    return result
