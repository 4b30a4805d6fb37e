"""Serving benchmark: the server against its compute limit and its transport limit, in one run.

    python bench/serving.py [--models models] [--duration 5] [--write] [--tune]

For cifar-tiny and cifar-vgg, B images per request and C calls in flight (closed loop,
``python -m service bench``), it measures side by side, with the server (or the in-process run)
pinned to one core and the load generator to the other (``--server-cores`` / ``--client-cores``
give each a set of cores instead, on a machine that has more):
  (a) in-process onnxruntime at batch B with the server's session options and threads: the compute limit;
  (b) the server, batching on (the model's max_batch_size);
  (c) the server, batching off (max_batch_size = B: every batch is exactly one request);
  (d) the echo server (service/echo.py): same messages and reply sizes, no compute: the transport limit;
  (e) at C=1, two floors: the echo server with ``--busy-ms`` = the in-process latency (transport +
      that much busy time + one thread hand-off and nothing else), and the echo server with
      ``--compute`` (transport + the server's own batch queue and onnxruntime session, none of its
      per-request work);
  (f) for the cifar-tiny C=64 target, in interleaved rounds: the echo, the echo with ``--compute``
      (the floor of this design under load) and the server; the target is judged on the median.
All servers are started first; each cell's runs follow one another, so a cell's ratios compare
runs seconds apart on the shared machine.
Then it checks the issue's targets and prints them; ``--write`` puts the tables, the command and the
machine into docs/BENCHMARKS.md between the serving markers. ``--tune`` adds a table of batching
settings (max_batch_size, max_queue_delay_ms) under load, from which the defaults are chosen.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.processes import cores_text, load, parse_cores, pinned, served, start_echo, start_server, stop  # noqa: E402
from bench.report import machine, write_section  # noqa: E402

SECTION = "serving"
MODELS = ("cifar-tiny", "cifar-vgg")
TUNE_SETTINGS = ((16, 0.0), (64, 0.0), (256, 0.0), (64, 1.0), (64, 5.0))
ROUNDS_CELL = ("cifar-tiny", 1, 64)
"""(model, B, C) of the echo-share target, the cell measured again in interleaved rounds."""


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
        run = lambda: session.run([spec.output_name], {spec.input_name: x})  # noqa: E731
        for _ in range(3):
            run()
        times: list[float] = []
        while len(times) < 20 or sum(times) < min_time:
            t = time.perf_counter()
            run()
            times.append(time.perf_counter() - t)
        median = statistics.median(times)
        out[str(batch)] = {"latency_ms": median * 1e3, "images_per_s": batch / median}
    return out


def in_process(args, model: str, batches: list[int]) -> dict[int, dict]:
    command = [sys.executable, __file__, "--in-process", model, "--models", str(args.models), "--threads",
               str(args.threads), "--in-process-batches", *map(str, batches), "--duration", str(args.duration)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, preexec_fn=pinned(args.server_cores),
                          timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"in-process run failed:\n{done.stderr[-3000:]}")
    return {int(b): v for b, v in json.loads(done.stdout).items()}


# -- the run --------------------------------------------------------------------------------------

@dataclass
class Cell:
    model: str
    batch: int
    concurrency: int
    compute: dict   # in-process at batch B
    on: dict
    off: dict
    echo: dict
    floor: dict | None = None  # C=1 only: the echo server busy for the in-process latency per call
    compute_floor: dict | None = None  # C=1 only: the echo server with --compute (the real batch queue and session)


def measure(args, workdir: Path) -> tuple[list[Cell], dict]:
    """Every cell's runs (echo, on, off and at C=1 the two floors) back to back, against servers that
    are all started first and wait idle on the server core in between: the ratios of a cell then
    compare runs seconds apart, not minutes, and the shared machine drifts less in between. The
    order is reversed every other cell."""
    compute = {m: in_process(args, m, sorted({*args.batches, 64})) for m in args.model}
    print("in-process:", json.dumps(compute), flush=True)
    results: dict[tuple, dict] = {}
    with contextlib.ExitStack() as running:
        def started(launched: tuple[subprocess.Popen, dict]) -> tuple[subprocess.Popen, dict]:
            running.callback(stop, launched[0])
            return launched

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
                proc, info = {"echo": echo, "on": on, "off": off[batch], "floor": floors.get(("floor", model, batch)),
                              "compute-floor": floors.get("compute-floor")}[kind]
                r = results[kind, model, batch, c] = (
                    served(args, info, proc.pid, model, batch, c) if kind in ("on", "off")
                    else load(args, info["port"], model, batch, c, proc.pid))
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
            proc, info = (start_server(args, workdir, name) if kind == "on" else
                          start_echo(args, workdir, name, *(("--compute", "--intra-op-threads", str(args.threads))
                                                            if kind == "floor" else ())))
            try:
                row[kind] = load(args, info["port"], model, batch, concurrency, proc.pid)["requests_per_s"]
            finally:
                stop(proc)
        print(f"round {round_ + 1} {model} B={batch} C={concurrency}: "
              + ", ".join(f"{kind} {row[kind]:,.0f} req/s" for kind in kinds), flush=True)
        rows.append(row)
    return rows


def median_ratio(rows: list[dict[str, float]], over: str, under: str) -> float:
    return statistics.median(r[over] / r[under] for r in rows)


def rounds_table(rows: list[dict[str, float]]) -> str:
    lines = ["| round | echo req/s | floor req/s | served req/s | floor / echo | served / echo | served / floor |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for i, r in enumerate(rows, 1):
        lines.append(f"| {i} | {r['echo']:,.0f} | {r['floor']:,.0f} | {r['on']:,.0f} | {r['floor'] / r['echo']:.2f} "
                     f"| {r['on'] / r['echo']:.2f} | {r['on'] / r['floor']:.2f} |")
    lines.append(f"| median | | | | {median_ratio(rows, 'floor', 'echo'):.2f} | {median_ratio(rows, 'on', 'echo'):.2f} "
                 f"| {median_ratio(rows, 'on', 'floor'):.2f} |")
    return "\n".join(lines)


def tune(args, workdir: Path) -> list[dict]:
    """Batching settings under load (B = 1): images/s and latency per (max_batch_size, max_queue_delay_ms).

    Every setting is measured ``--tune-rounds`` times, the order reversed each round so that a slow
    spell of the shared machine does not fall on one setting only; merge_rounds() averages them.
    """
    rows = []
    for round_ in range(args.tune_rounds):
        for max_batch, delay in (TUNE_SETTINGS if round_ % 2 == 0 else TUNE_SETTINGS[::-1]):
            proc, info = start_server(args, workdir, f"tune-{max_batch}-{delay}-{round_}", "--max-batch-size",
                                      str(max_batch), "--max-queue-delay-ms", str(delay), "--max-queue-size",
                                      str(max(1024, max_batch)))
            try:
                for model in args.model:
                    for c in args.tune_concurrency:
                        r = served(args, info, proc.pid, model, 1, c)
                        rows.append({"model": model, "max_batch_size": max_batch, "delay_ms": delay,
                                     "concurrency": c, **r})
                        print(f"tune {round_ + 1}/{args.tune_rounds} {model} max_batch={max_batch} delay={delay} "
                              f"C={c}: {r['images_per_s']:,.0f} img/s, p50 {r['latency_ms']['p50']:.3f} ms, "
                              f"p99 {r['latency_ms']['p99']:.3f} ms, mean batch {r['mean_batch']:.1f}", flush=True)
            finally:
                stop(proc)
    return merge_rounds(rows)


def merge_rounds(rows: list[dict]) -> list[dict]:
    """One row per (model, max_batch_size, delay, C): the mean of its rounds, each round's images/s kept."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["max_batch_size"], r["delay_ms"], r["concurrency"]), []).append(r)
    merged = []
    for (model, size, delay, c), runs in groups.items():
        mean = lambda key, sub=None: sum(r[key][sub] if sub else r[key] for r in runs) / len(runs)  # noqa: E731
        merged.append({"model": model, "max_batch_size": size, "delay_ms": delay, "concurrency": c,
                       "images_per_s": mean("images_per_s"), "rounds": [r["images_per_s"] for r in runs],
                       "latency_ms": {"p50": mean("latency_ms", "p50"), "p99": mean("latency_ms", "p99")},
                       "mean_batch": mean("mean_batch"), "error_count": sum(r["error_count"] for r in runs)})
    return merged


# -- targets and tables ---------------------------------------------------------------------------

def served_images_bound(c: Cell, server_cores: int = 1) -> float:
    """The most images/s the server can serve. Each request costs one echo request's time (1 / echo
    requests/s) and the compute of its B images at the best in-process images/s of any batch size
    (under load batches grow beyond B). On one core the two add up; on more, the compute thread can
    run beside the event loop, and the slower of the two limits."""
    best = c.compute.get("best_images_per_s", c.compute["images_per_s"])
    transport, compute = 1 / c.echo["requests_per_s"], c.batch / best
    return c.batch / (transport + compute if server_cores == 1 else max(transport, compute))


def transport_bound(c: Cell, server_cores: int = 1) -> float:
    """served_images_bound as a share of in-process images/s at batch B (the vgg target's measure)."""
    return served_images_bound(c, server_cores) / c.compute["images_per_s"]


def echo_share_bound(c: Cell, server_cores: int = 1) -> float:
    """served_images_bound as a share of the echo's requests/s (the tiny target's measure)."""
    return served_images_bound(c, server_cores) / (c.batch * c.echo["requests_per_s"])


def bound_name(server_cores: int) -> str:
    return "transport bound on one core" if server_cores == 1 else \
        f"bound on {server_cores} cores (compute beside the transport)"


def cpu_per_request_ms(run: dict) -> float:
    """Server CPU milliseconds per request in a load run (its CPU share over its request rate)."""
    return 1e3 * run.get("server_cpu", 0.0) / max(run["requests_per_s"], 1e-9)


def targets(cells: list[Cell], rounds: list[dict[str, float]] | None = None,
            server_cores: int = 1) -> list[tuple[str, bool, str]]:
    """Each target of the issue: (statement, met, the figures behind it). With ``rounds``
    (target_rounds()), the echo-share target is judged on their median ratio, else on the sweep's cell."""
    out = []
    top = max(c.concurrency for c in cells)
    for c in (c for c in cells if c.model == "cifar-vgg" and c.concurrency == top):
        r = c.on["images_per_s"] / c.compute["images_per_s"]
        out.append((f"cifar-vgg served images/s >= 0.9 x in-process at the same batch size (B={c.batch}, C={top})",
                    r >= 0.9, f"{c.on['images_per_s']:,.0f} / {c.compute['images_per_s']:,.0f} = {r:.2f}; "
                              f"{bound_name(server_cores)} {transport_bound(c, server_cores):.2f}"))
    for c in (c for c in cells if (c.model, c.batch, c.concurrency) == ROUNDS_CELL):
        r = sweep = c.on["requests_per_s"] / c.echo["requests_per_s"]
        judged = f"{c.on['requests_per_s']:,.0f} / {c.echo['requests_per_s']:,.0f} = {r:.2f}"
        if rounds:
            r = median_ratio(rounds, "on", "echo")
            judged = (f"median over {len(rounds)} interleaved rounds {r:.2f} ("
                      + ", ".join(f"{x['on'] / x['echo']:.2f}" for x in rounds) + f"; the sweep's cell {sweep:.2f}); "
                      f"the floor of this design (echo --compute) reaches {median_ratio(rounds, 'floor', 'echo'):.2f}")
        out.append(("cifar-tiny single-image requests at C=64 >= 0.8 x the echo server's requests/s", r >= 0.8,
                    f"{judged}; {bound_name(server_cores)} {echo_share_bound(c, server_cores):.2f}; "
                    f"server CPU per request: served {cpu_per_request_ms(c.on):.3f} ms, echo "
                    f"{cpu_per_request_ms(c.echo):.3f} ms (echo run: server CPU {c.echo.get('server_cpu', 0):.0%}, "
                    f"client CPU {c.echo['client_cpu']:.0%})"))
    high = [c for c in cells if c.concurrency >= 8]
    if high:
        worst = min(high, key=lambda c: c.on["images_per_s"] / c.off["images_per_s"])
        out.append(("batching on >= batching off (images/s) at every C >= 8",
                    all(c.on["images_per_s"] >= c.off["images_per_s"] for c in high),
                    f"lowest on/off {worst.on['images_per_s'] / worst.off['images_per_s']:.2f} "
                    f"({worst.model}, B={worst.batch}, C={worst.concurrency})"))
    for c in (c for c in cells if c.concurrency == 1):
        bound = c.compute["latency_ms"] + c.echo["latency_ms"]["p50"] + 0.3
        got = c.on["latency_ms"]["p50"]
        detail = (f"{got:.3f} ms <= {c.compute['latency_ms']:.3f} + {c.echo['latency_ms']['p50']:.3f} + 0.3 "
                  f"= {bound:.3f} ms")
        if "batch_compute_ms" in c.on:
            detail += f"; the server's own compute per batch in this run {c.on['batch_compute_ms']:.3f} ms"
        floors = [(f"floor (echo, busy {c.compute['latency_ms']:.3f} ms per call)", c.floor),
                  ("floor with the real compute (echo --compute)", c.compute_floor)]
        for name, floor in ((name, run["latency_ms"]["p50"]) for name, run in floors if run is not None):
            detail += f"; {name} {floor:.3f} ms" + (", above the bound" if floor > bound else "")
        if any(run is not None and run["latency_ms"]["p50"] > bound for _, run in floors):
            detail += ": not reachable by this design on this machine"
        out.append((f"C=1 served p50 <= in-process + echo p50 + 0.3 ms ({c.model}, B={c.batch})", got <= bound,
                    detail))
    return out


def results_table(cells: list[Cell]) -> str:
    lines = ["| model | B | C | in-process img/s | on img/s | on p50 / p99 ms | on mean batch | off img/s "
             "| off p50 / p99 ms | echo req/s | echo p50 / p99 ms | on / in-process | on / off | on / echo req/s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c in cells:
        on, off, echo = c.on, c.off, c.echo
        lines.append(
            f"| {c.model} | {c.batch} | {c.concurrency} | {c.compute['images_per_s']:,.0f} | {on['images_per_s']:,.0f} "
            f"| {on['latency_ms']['p50']:.2f} / {on['latency_ms']['p99']:.2f} | {on['mean_batch']:.1f} "
            f"| {off['images_per_s']:,.0f} | {off['latency_ms']['p50']:.2f} / {off['latency_ms']['p99']:.2f} "
            f"| {echo['requests_per_s']:,.0f} | {echo['latency_ms']['p50']:.2f} / {echo['latency_ms']['p99']:.2f} "
            f"| {on['images_per_s'] / c.compute['images_per_s']:.2f} | {on['images_per_s'] / off['images_per_s']:.2f} "
            f"| {on['requests_per_s'] / echo['requests_per_s']:.2f} |")
    return "\n".join(lines)


def compute_table(compute: dict) -> str:
    lines = ["| model | batch | latency ms | images/s |", "| --- | ---: | ---: | ---: |"]
    for model, rows in compute.items():
        for batch, r in sorted(rows.items()):
            lines.append(f"| {model} | {batch} | {r['latency_ms']:.3f} | {r['images_per_s']:,.0f} |")
    return "\n".join(lines)


def tune_table(rows: list[dict]) -> str:
    lines = ["| model | C | max_batch_size | max_queue_delay_ms | images/s | images/s per round | p50 ms | p99 ms "
             "| mean batch | errors |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in sorted(rows, key=lambda r: (r["model"], r["concurrency"], r["max_batch_size"], r["delay_ms"])):
        rounds = " / ".join(f"{x:,.0f}" for x in r.get("rounds", [r["images_per_s"]]))
        lines.append(f"| {r['model']} | {r['concurrency']} | {r['max_batch_size']} | {r['delay_ms']:g} "
                     f"| {r['images_per_s']:,.0f} | {rounds} | {r['latency_ms']['p50']:.2f} "
                     f"| {r['latency_ms']['p99']:.2f} | {r['mean_batch']:.1f} | {r['error_count']} |")
    return "\n".join(lines)


def recommend(rows: list[dict]) -> tuple[int, float, list[str]]:
    """The defaults the tuning rows support, and the sentences that say why.

    max_batch_size: the smallest tried (no delay) within 5 % of the best images/s at the highest
    concurrency, for every model (a smaller batch computes sooner, so tail latency is lower). Sizes at
    or above the images in flight there (C x 1) cannot differ, so they count as one, with their mean.
    max_queue_delay_ms: the smallest tried unless a delay gains more than 5 % images/s there for every
    model: it is one server-wide default, and a lone request pays it in full.
    """
    top = max(r["concurrency"] for r in rows)
    low = min(r["concurrency"] for r in rows)
    find = {(r["model"], r["max_batch_size"], r["delay_ms"], r["concurrency"]): r for r in rows}
    models = sorted({r["model"] for r in rows})
    sizes = sorted({r["max_batch_size"] for r in rows if r["delay_ms"] == 0})
    delays = sorted({r["delay_ms"] for r in rows})
    why, chosen_size = [], []
    for m in models:
        throughput: dict[int, list[float]] = {}  # the smallest size of each group that behaves alike -> images/s
        for b in sizes:
            alike = min(x for x in sizes if x >= top) if b >= top else b
            throughput.setdefault(alike, []).append(find[m, b, 0.0, top]["images_per_s"])
        mean = {b: sum(v) / len(v) for b, v in throughput.items()}
        best = max(mean.values())
        size = next(b for b in sorted(mean) if mean[b] >= 0.95 * best)
        chosen_size.append(size)
        why.append(f"{m} at C={top}: " + ", ".join(
            f"max_batch_size {b}: {find[m, b, 0.0, top]['images_per_s']:,.0f} images/s (p99 "
            f"{find[m, b, 0.0, top]['latency_ms']['p99']:.1f} ms)" for b in sizes) + ".")
    size = max(chosen_size)
    delay = delays[0]
    for d in delays[1:]:
        gains = []
        for m in models:
            base, r, slow = find.get((m, size, delays[0], top)), find.get((m, size, d, top)), find.get((m, size, d, low))
            if not (base and r and slow):
                gains.append(0.0)
                continue
            gains.append(r["images_per_s"] / base["images_per_s"] - 1)
            cost = slow["latency_ms"]["p50"] - find[m, size, delays[0], low]["latency_ms"]["p50"]
            why.append(f"{m}, max_queue_delay_ms {d:g}: {gains[-1]:+.0%} images/s at C={top}, "
                       f"{cost:+.2f} ms p50 at C={low}.")
        if min(gains) > 0.05:
            delay = max(delay, d)
    return size, delay, why


def shipped_defaults(size: int, delay: float) -> str:
    """How the recommendation compares with the defaults the server ships (service.batching.BatchSettings)."""
    from service.batching import BatchSettings

    shipped = BatchSettings()
    if (shipped.max_batch_size, shipped.max_queue_delay_ms) == (size, delay):
        return " (the shipped defaults)"
    return (f", not the shipped defaults (max_batch_size {shipped.max_batch_size}, max_queue_delay_ms "
            f"{shipped.max_queue_delay_ms:g})")


def cores(spec: str) -> frozenset[int]:
    try:
        return parse_cores(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, default=ROOT / "models", help="model repository (default models/)")
    p.add_argument("--model", nargs="+", default=list(MODELS))
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8], help="images per request (default 1 8)")
    p.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 64], help="calls in flight (default 1 8 64)")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="unrecorded seconds before each cell (default 1)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads, server and in-process (default 1)")
    p.add_argument("--server-cores", "--server-core", type=cores, default=frozenset({0}),
                   help="cores of the server and the in-process run: 0, 0-3 or 0,2 (default 0)")
    p.add_argument("--client-cores", "--client-core", type=cores, default=frozenset({1}),
                   help="cores of the load generator (default 1)")
    p.add_argument("--tune", action="store_true", help="also measure batching settings (the defaults' evidence)")
    p.add_argument("--tune-concurrency", nargs="+", type=int, default=[1, 8, 64])
    p.add_argument("--tune-rounds", type=int, default=2, help="measurements per tuning setting (default 2)")
    p.add_argument("--target-rounds", type=int, default=3,
                   help="interleaved rounds of echo, floor and server for the cifar-tiny C=64 target (default 3)")
    p.add_argument("--write", action="store_true", help="write the section of docs/BENCHMARKS.md")
    p.add_argument("--in-process", metavar="MODEL", help=argparse.SUPPRESS)
    p.add_argument("--in-process-batches", nargs="+", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.in_process:
        print(json.dumps(in_process_child(args.in_process, args.models, args.in_process_batches, args.threads,
                                          min(args.duration, 2.0))))
        return 0
    usable = os.sched_getaffinity(0)
    if args.server_cores & args.client_cores or not args.server_cores | args.client_cores <= usable:
        print(f"bench/serving.py: error: --server-cores/--client-cores: expected two disjoint sets of the cores "
              f"{sorted(usable)}, got {sorted(args.server_cores)} and {sorted(args.client_cores)}", file=sys.stderr)
        return 2
    if args.tune_rounds < 1:
        print(f"bench/serving.py: error: --tune-rounds: expected an integer >= 1, got {args.tune_rounds}",
              file=sys.stderr)
        return 2
    if args.target_rounds < 0:
        print(f"bench/serving.py: error: --target-rounds: expected an integer >= 0, got {args.target_rounds}",
              file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        cells, compute = measure(args, Path(tmp))
        rounds = target_rounds(args, Path(tmp))
        tuned = tune(args, Path(tmp)) if args.tune else []
    load_after = os.getloadavg()
    verdicts = targets(cells, rounds, len(args.server_cores))
    command = "python bench/serving.py " + " ".join(a for a in (argv if argv is not None else sys.argv[1:])
                                                      if a != "--write")
    text = report(args, cells, compute, rounds, tuned, verdicts, command.strip(), load_before, load_after,
                  time.time() - started)
    print(text)
    if args.write:
        print(f"wrote {write_section(SECTION, text).relative_to(ROOT)}")
    return 0


def report(args, cells, compute, rounds, tuned, verdicts, command, load_before, load_after, seconds) -> str:
    lines = [
        "## Serving: the server against its compute and transport limits",
        "",
        f"Command: `{command}` ({seconds / 60:.1f} min)  ",
        f"Machine: {machine()}. Load average before / after: "
        f"{' '.join(f'{x:.2f}' for x in load_before)} / {' '.join(f'{x:.2f}' for x in load_after)} "
        "(the machine is shared with other work, so single figures carry noise; every ratio below comes from "
        "this one run, and each cell's runs directly follow one another).",
        "",
        f"The server (and the in-process run) is pinned to {cores_text(args.server_cores)}, the load generator "
        f"(`python -m service bench`, closed loop, {args.duration:g} s per cell after {args.warmup:g} s warm-up, "
        f"raw float32 tensors over convnet.v1 Classify) to {cores_text(args.client_cores)}. onnxruntime runs "
        f"{args.threads} intra-op thread(s) with the server's session options, one instance per model. "
        "Columns: *in-process* = `session.run` at batch B in a loop (the compute limit); *on* = the server with "
        "batching on (max_batch_size 64, no queue delay); *off* = max_batch_size B, so every batch is exactly one "
        "request; *echo* = `python -m service.echo`, the same messages and reply sizes without compute (the "
        "transport limit); *mean batch* = images per computed batch, from the server's metrics. "
        "B = images per request, C = calls in flight. The C=1 targets also give two *floors*: the echo server with "
        "`--busy-ms` set to the in-process latency, so each call costs the transport, that much busy time in "
        "a worker thread and the hand-off to it, and nothing else; and the echo server with `--compute`, whose "
        "calls go through the server's own batch queue and onnxruntime session (a lone request computes as "
        "slowly as it does in the server) but skip the server's per-request work.",
        "",
        results_table(cells),
        "",
        "In-process onnxruntime (same options and threads, pinned):",
        "",
        compute_table(compute),
        "",
        *([f"{ROUNDS_CELL[0]}, B={ROUNDS_CELL[1]}, C={ROUNDS_CELL[2]} again, in {len(rounds)} interleaved rounds "
           "(echo, floor and server back to back, the order reversed every other round). *floor* = "
           "`python -m service.echo --compute`: the transport plus the server's own batch queue and onnxruntime "
           "session, and none of the server's per-request work (validation, metrics, scores into replies), so "
           "*served / floor* is what that work costs:", "", rounds_table(rounds), ""] if rounds else []),
        "Targets:",
        "",
        *[f"- {'met' if ok else 'MISSED'}: {name}: {detail}" for name, ok, detail in verdicts],
    ]
    if tuned:
        size, delay, why = recommend(tuned)
        lines += ["", "### Choosing the batching defaults", "",
                  "Batching settings under load (B = 1, batching on, the same pinning):", "", tune_table(tuned), "",
                  *why, "",
                  f"Recommended defaults from this run: max_batch_size {size}, max_queue_delay_ms {delay:g}"
                  f"{shipped_defaults(size, delay)}. "
                  "A free instance starts its batch once the server's event loop has taken in every request that "
                  "has reached it (service/idle.py), so no fixed delay is needed for batches to grow under load, "
                  "and a fixed delay is paid in full by a lone request."]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
