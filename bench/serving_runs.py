"""The runs of the serving benchmark (bench/serving.py): the in-process compute limit, the grid of
cells against servers and echo servers all started first, the interleaved target rounds and the
batching settings under load."""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

from bench.launcher import ROOT, ServerProcess, on_cores
from bench.processes import load, served, start_echo, start_server
from bench.report import median_seconds
from bench.serving_verdicts import ROUNDS_CELL, Cell, merge_rounds

MODELS = ("cifar-tiny", "cifar-vgg")
TUNE_SETTINGS = ((16, 0.0), (64, 0.0), (256, 0.0), (64, 1.0), (64, 5.0))


# -- in-process compute limit ---------------------------------------------------------------------

def in_process_child(model: str, models: Path, batches: list[int], threads: int, min_time: float) -> dict:
    """Median seconds of session.run at each batch size, with the server's session options."""
    import numpy as np

    from exporter.repository import list_versions
    from service.config import ServerConfig
    from service.repository import read_spec
    from service.sessions import Providers, create_session, session_options

    model_dir = models / model
    spec = read_spec(model_dir)
    path = model_dir / str(list_versions(model_dir)[-1]) / "model.onnx"
    session = create_session(path, spec, session_options(ServerConfig(intra_op_threads=threads)), Providers.resolve("cpu"))
    out = {}
    for batch in batches:
        x = np.random.default_rng(batch).standard_normal((batch, *spec.example_shape())).astype(np.float32)
        median = median_seconds(lambda: session.run([spec.output_name], {spec.input_name: x}), min_time,
                                warmup=3, min_runs=20)
        out[str(batch)] = {"latency_ms": median * 1e3, "images_per_s": batch / median}
    return out


def in_process(args, model: str, batches: list[int]) -> dict[int, dict]:
    command = [sys.executable, "-m", "bench.serving", "--in-process", model, "--models", str(args.models), "--threads",
               str(args.threads), "--in-process-batches", *map(str, batches), "--duration", str(args.duration)]
    done = subprocess.run(on_cores(command, args.server_cores), cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"in-process run failed:\n{done.stderr[-3000:]}")
    return {int(b): v for b, v in json.loads(done.stdout).items()}


# -- the run --------------------------------------------------------------------------------------

def measure(args, workdir: Path) -> tuple[list[Cell], dict]:
    """Every cell's runs (echo, on, off and at C=1 the two floors) back to back, against servers that
    are all started first and wait idle on the server core in between: the ratios of a cell then
    compare runs seconds apart, not minutes, and the shared machine drifts less in between. The
    order is reversed every other cell."""
    compute = {m: in_process(args, m, sorted({*args.batches, 64})) for m in args.model}
    print("in-process:", json.dumps(compute), flush=True)
    results: dict[tuple, dict] = {}
    with contextlib.ExitStack() as running:
        def started(server: ServerProcess) -> ServerProcess:
            running.callback(server.stop)
            return server

        echo = started(start_echo(args, workdir))
        on = started(start_server(args, workdir, "server-batching-on"))
        off = {b: started(start_server(args, workdir, f"server-batching-off-{b}", "--max-batch-size", str(b),
                                       "--max-queue-delay-ms", "0")) for b in args.batches}
        floors = {}
        if 1 in args.concurrency:
            floors["compute-floor"] = started(start_echo(args, workdir, "echo-compute", "--compute",
                                                         "--intra-op-threads", str(args.threads)))
            for m in args.model:
                for b in args.batches:
                    busy_ms = f"{compute[m][b]['latency_ms']:.4f}"
                    floors["floor", m, b] = started(start_echo(args, workdir, f"echo-busy-{busy_ms}", "--busy-ms",
                                                               busy_ms))
        grid = [(m, b, c) for m in args.model for b in args.batches for c in args.concurrency]
        for i, (model, batch, c) in enumerate(grid):
            kinds = ["echo", "on", "off"] + (["floor", "compute-floor"] if c == 1 else [])
            for kind in kinds if i % 2 == 0 else kinds[::-1]:
                server = {"echo": echo, "on": on, "off": off[batch], "floor": floors.get(("floor", model, batch)),
                              "compute-floor": floors.get("compute-floor")}[kind]
                r = results[kind, model, batch, c] = (
                    served(args, server, model, batch, c) if kind in ("on", "off")
                    else load(args, server.port, model, batch, c, server.pid))
                print(f"{kind:>13} {model} B={batch} C={c}: {r['requests_per_s']:,.0f} req/s, "
                      f"{r['images_per_s']:,.0f} img/s, p50 {r['latency_ms']['p50']:.3f} ms, "
                      f"errors {r['error_count']}, server CPU {r.get('server_cpu', 0):.0%}, "
                      f"client CPU {r['client_cpu']:.0%}", flush=True)
    best = {m: max(r["images_per_s"] for r in compute[m].values()) for m in args.model}
    cells = [Cell(m, b, c, {**compute[m][b], "best_images_per_s": best[m]}, results["on", m, b, c],
                  results["off", m, b, c], results["echo", m, b, c], results.get(("floor", m, b, c)),
                  results.get(("compute-floor", m, b, c)))
             for m, b, c in grid]
    return cells, compute


def target_rounds(args, workdir: Path) -> list[dict[str, float]]:
    """ROUNDS_CELL's requests/s for the echo, the floor (echo --compute) and the server, round by round.

    Each round runs the three back to back, the order reversed every other round; the machine's
    speed drifts by up to 20 % over minutes, less within one round, and the median of the rounds'
    ratios is steadier than the one ratio of the sweep's cell.
    """
    model, batch, concurrency = ROUNDS_CELL
    if model not in args.model or batch not in args.batches or concurrency not in args.concurrency:
        return []
    kinds = ("echo", "floor", "on")
    rows = []
    for round_ in range(args.target_rounds):
        row = {}
        for kind in kinds if round_ % 2 == 0 else kinds[::-1]:
            name = f"round-{round_}-{kind}"
            server = (start_server(args, workdir, name) if kind == "on" else
                      start_echo(args, workdir, name, *(("--compute", "--intra-op-threads", str(args.threads))
                                                        if kind == "floor" else ())))
            try:
                row[kind] = load(args, server.port, model, batch, concurrency, server.pid)["requests_per_s"]
            finally:
                server.stop()
        print(f"round {round_ + 1} {model} B={batch} C={concurrency}: "
              + ", ".join(f"{kind} {row[kind]:,.0f} req/s" for kind in kinds), flush=True)
        rows.append(row)
    return rows


def tune(args, workdir: Path) -> list[dict]:
    """Batching settings under load (B = 1): images/s and latency per (max_batch_size, max_queue_delay_ms).

    Every setting is measured ``--tune-rounds`` times, the order reversed each round so that a slow
    spell of the shared machine does not fall on one setting only; merge_rounds() averages them.
    """
    rows = []
    for round_ in range(args.tune_rounds):
        for max_batch, delay in (TUNE_SETTINGS if round_ % 2 == 0 else TUNE_SETTINGS[::-1]):
            server = start_server(args, workdir, f"tune-{max_batch}-{delay}-{round_}", "--max-batch-size",
                                  str(max_batch), "--max-queue-delay-ms", str(delay), "--max-queue-size",
                                  str(max(1024, max_batch)))
            try:
                for model in args.model:
                    for c in args.tune_concurrency:
                        r = served(args, server, model, 1, c)
                        rows.append({"model": model, "max_batch_size": max_batch, "delay_ms": delay,
                                     "concurrency": c, **r})
                        print(f"tune {round_ + 1}/{args.tune_rounds} {model} max_batch={max_batch} delay={delay} "
                              f"C={c}: {r['images_per_s']:,.0f} img/s, p50 {r['latency_ms']['p50']:.3f} ms, "
                              f"p99 {r['latency_ms']['p99']:.3f} ms, mean batch {r['mean_batch']:.1f}", flush=True)
            finally:
                server.stop()
    return merge_rounds(rows)
