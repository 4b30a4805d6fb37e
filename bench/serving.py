"""Serving benchmark: the server against its compute limit and its transport limit, in one run.

    python -m bench.serving [--models models] [--duration 5] [--write] [--tune]

For cifar-tiny and cifar-vgg, B images per request and C calls in flight (closed loop,
``python -m bench.load``), it measures side by side, with the server (or the in-process run)
pinned to one core and the load generator to the other (``--server-cores`` / ``--client-cores``
give each a set of cores instead, on a machine that has more):
  (a) in-process onnxruntime at batch B with the server's session options and threads: the compute limit;
  (b) the server, batching on (the model's max_batch_size);
  (c) the server, batching off (max_batch_size = B: every batch is exactly one request);
  (d) the echo server (bench/echo.py): same messages and reply sizes, no compute: the transport limit;
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
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench import ROOT
from bench.processes import cores_error, cores_text, parse_cores
from bench.report import command_line, machine, publish
from bench.serving_runs import MODELS, in_process_child, measure, target_rounds, tune
from bench.serving_verdicts import (ROUNDS_CELL, compute_table, recommend, results_table, rounds_table,
                                    shipped_defaults, targets, tune_table)


SECTION = "serving"


def cores(spec: str) -> frozenset[int]:
    try:
        return parse_cores(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The options of a run that bench/revisions.py shares: seconds per cell, threads, pinning."""
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="unrecorded seconds before each cell (default 1)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads, server and in-process (default 1)")
    p.add_argument("--server-cores", "--server-core", type=cores, default=frozenset({0}),
                   help="cores of the server and the in-process run: 0, 0-3 or 0,2 (default 0)")
    p.add_argument("--client-cores", "--client-core", type=cores, default=frozenset({1}),
                   help="cores of the load generator (default 1)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, default=ROOT / "models", help="model repository (default models/)")
    p.add_argument("--model", nargs="+", default=list(MODELS))
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8], help="images per request (default 1 8)")
    p.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 64], help="calls in flight (default 1 8 64)")
    add_run_arguments(p)
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
    if error := cores_error(args.server_cores, args.client_cores):
        print(f"bench/serving.py: error: {error}", file=sys.stderr)
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
    command = command_line("-m bench.serving", argv)
    text = report(args, cells, compute, rounds, tuned, verdicts, command, load_before, load_after,
                  time.time() - started)
    publish(SECTION, text, args.write)
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
        f"(`python -m bench.load`, closed loop, {args.duration:g} s per cell after {args.warmup:g} s warm-up, "
        f"raw float32 tensors over convnet.v1 Classify) to {cores_text(args.client_cores)}. onnxruntime runs "
        f"{args.threads} intra-op thread(s) with the server's session options, one instance per model. "
        "Columns: *in-process* = `session.run` at batch B in a loop (the compute limit); *on* = the server with "
        "batching on (max_batch_size 64, no queue delay); *off* = max_batch_size B, so every batch is exactly one "
        "request; *echo* = `python -m bench.echo`, the same messages and reply sizes without compute (the "
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
           "`python -m bench.echo --compute`: the transport plus the server's own batch queue and onnxruntime "
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
