"""A/B benchmark: the served figures of two git revisions of this repository, in one run.

    python -m bench.revisions --base REV [--head WORKTREE] [--duration 5] [--rounds 3]
                              [--cells MODEL:B:C ...] [--client python|h2load] [--write] [--prepare-only]

The base revision is prepared once in a worktree of its own under ~/.cache/convnet-bench/ (its own venv from
its scripts/install.sh, its own models/ from its ``python -m exporter defaults``) and reused; the head
is this checkout with this interpreter (or another worktree with its .venv). For each cell (model,
B images per request, C calls in flight) it measures each revision's server with batching on (the
shipped configuration) and off (max_batch_size = B), as bench/serving.py does: one instance of one
intra-op thread, the server on core 0, this checkout's load generator (``python -m bench.load``,
or with ``--client h2load`` the C client h2load, bench/h2load.py) on core 1, and in-process
onnxruntime at batch B once per model. All servers (per revision: on, and
off for each B) are started first; then each round runs every cell's four servers back to back, the order reversed
every other round and cell, so a cell's ratios compare runs seconds apart. ``--write`` puts the
table, the command, the machine and both commit ids into docs/BENCHMARKS.md between the revisions
markers. The minutes it gives leave out the preparation (``--prepare-only`` does just that).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench import ROOT
from bench.checkouts import CACHE, Checkout, as_is, prepare
from bench.launcher import ServerProcess
from bench.processes import cores_error, cores_text, served, start_server
from bench.report import command_line, machine, publish
from bench.revisions_table import DEFAULT_CELLS, KINDS, Cell, parse_cell, summarize, table
from bench.serving import add_run_arguments
from bench.serving_runs import in_process


SECTION = "revisions"
CLIENT_TEXT = {"python": "`python -m bench.load` of the head over convnet.v1 Classify",
               "h2load": "h2load, nghttp2's C client, replaying one KServe ModelInfer over one HTTP/2 connection "
                         "with C streams; OK answers counted from the servers' metrics"}
SAMENESS = {"file": "both serve the same ONNX file",
            "graph": "both serve the same ONNX graph and weights (the files differ only in metadata)",
            "": "the two serve DIFFERENT ONNX graphs (the in-process column is the head's)"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="the revision to compare against: a commit id, branch, tag or HEAD~n")
    p.add_argument("--head", type=Path, default=ROOT, help="the checkout measured against it (default this one)")
    p.add_argument("--cells", nargs="+", type=parse_cell, default=list(DEFAULT_CELLS), metavar="MODEL:B:C",
                   help="cells to measure (default " + " ".join(f"{c.model}:{c.batch}:{c.concurrency}"
                                                                 for c in DEFAULT_CELLS) + ")")
    p.add_argument("--rounds", type=int, default=3, help="rounds of every cell; the medians are over them (default 3)")
    p.add_argument("--client", choices=["python", "h2load"], default="python",
                   help="the load generator: this checkout's `python -m bench.load` (Classify), or h2load, a C "
                        "client that is never the bottleneck (KServe ModelInfer; Debian nghttp2-client)")
    p.add_argument("--cache", type=Path, default=CACHE, help=f"where prepared revisions are kept (default {CACHE})")
    add_run_arguments(p)
    p.add_argument("--write", action="store_true", help="write the section of docs/BENCHMARKS.md")
    p.add_argument("--prepare-only", action="store_true",
                   help="only prepare the two checkouts (the base's worktree, venv and models), measure nothing")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error(f"--rounds: expected an integer >= 1, got {args.rounds}")
    if error := cores_error(args.server_cores, args.client_cores):
        p.error(error)
    args.cells = list(dict.fromkeys(args.cells))
    return args


def model_files(repo: Path, model: str) -> Path:
    """The newest version's ONNX file of ``model`` in ``repo``."""
    versions = [p for p in (repo / model).iterdir() if p.name.isdigit() and (p / "model.onnx").is_file()]
    return max(versions, key=lambda p: int(p.name)) / "model.onnx"


def sameness(checkouts: tuple[Checkout, ...], models: list[str]) -> dict[str, str]:
    """Per model, what both checkouts' files share: "file" (byte-identical), "graph" (the same nodes,
    weights and opsets; only metadata such as preprocessing differs) or "" (different computations)."""
    import onnx

    def graph(path: Path) -> bytes:
        model = onnx.load(str(path))
        opsets = sorted((o.domain, o.version) for o in model.opset_import)
        return model.graph.SerializeToString() + repr(opsets).encode()

    same = {}
    for m in models:
        files = [model_files(c.models, m) for c in checkouts]
        same[m] = ("file" if len({hashlib.sha256(f.read_bytes()).digest() for f in files}) == 1 else
                   "graph" if len({graph(f) for f in files}) == 1 else "")
    return same


def measure(args, checkouts: tuple[Checkout, ...], workdir: Path) -> dict[tuple[Cell, str, str], list[dict]]:
    """Every cell's load runs against both revisions' servers, on and off, round by round."""
    runs: dict[tuple[Cell, str, str], list[dict]] = {(cell, *kind): [] for cell in args.cells for kind in KINDS}
    with contextlib.ExitStack() as running:
        servers: dict[tuple, ServerProcess] = {}
        for checkout in checkouts:
            def start(name: str, *flags: str) -> ServerProcess:
                server = start_server(args, workdir, f"{checkout.label}-{name}", *flags, **checkout.where)
                running.callback(server.stop)
                return server

            servers[checkout.label, "on"] = start("batching-on")
            for batch in sorted({cell.batch for cell in args.cells}):
                servers[checkout.label, "off", batch] = start(f"batching-off-{batch}", "--max-batch-size", str(batch),
                                                              "--max-queue-delay-ms", "0")
        for round_ in range(args.rounds):
            for i, cell in enumerate(args.cells):
                for label, mode in KINDS if (round_ + i) % 2 == 0 else KINDS[::-1]:
                    server = servers[(label, "on") if mode == "on" else (label, "off", cell.batch)]
                    r = served(args, server, cell.model, cell.batch, cell.concurrency)
                    runs[cell, label, mode].append(r)
                    print(f"round {round_ + 1}/{args.rounds} {cell} {label} {mode:>3}: {r['images_per_s']:,.0f} img/s, "
                          f"p50 {r['latency_ms']['p50']:.3f} ms, mean batch {r['mean_batch']:.1f}, "
                          f"errors {r['error_count']}, server CPU {r['server_cpu']:.0%}", flush=True)
    return runs


def report(args, checkouts: tuple[Checkout, ...], rows, same_models: dict[str, str], command: str,
           load_before, load_after, seconds: float) -> str:
    base, head = checkouts
    lines = [
        "## Revisions: two revisions' servers A/B in one run",
        "",
        f"Command: `{command}` ({seconds / 60:.1f} min)  ",
        f"Machine: {machine()}. Load average before / after: "
        f"{' '.join(f'{x:.2f}' for x in load_before)} / {' '.join(f'{x:.2f}' for x in load_after)}.",
        "",
        f"*base* = `{base.commit}` ({base.libraries}), served from a worktree of its own with its own venv "
        f"(its scripts/install.sh) and models (its `python -m exporter defaults`); *head* = `{head.commit}` "
        f"({head.libraries}). "
        + " ".join(f"{m}: {SAMENESS[how]}." for m, how in same_models.items()),
        "",
        f"Each server (and the in-process run) is pinned to {cores_text(args.server_cores)}, the load generator "
        f"({CLIENT_TEXT[args.client]}, closed loop, {args.duration:g} s per run after {args.warmup:g} s "
        f"warm-up) to {cores_text(args.client_cores)}; onnxruntime runs {args.threads} intra-op thread(s), one "
        "instance per model. *on* = the shipped batching configuration, *off* = max_batch_size B (every batch is "
        "one request); images/s are medians over "
        f"{args.rounds} round(s), each of which runs a cell's four servers back to back (base and head side by "
        "side, the order reversed every other round and cell). A ratio of two servers is the median of the "
        "rounds' ratios, with their range in parentheses; *on/in-process* divides the median by in-process "
        "onnxruntime at batch B (`session.run` in a loop, the compute limit). B = images per request, "
        "C = calls in flight.",
        "",
        table(rows),
    ]
    if any(row.errors for row in rows):
        lines += ["", "Errors: " + ", ".join(f"{row.cell}: {row.errors}" for row in rows if row.errors)
                  + " failed calls (the figures of those cells count only the answered ones)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        checkouts = (prepare(args.base, args.cache, "base"), as_is(args.head, "head"))
    except ValueError as exc:
        print(f"bench/revisions.py: error: --base: {exc}", file=sys.stderr)
        return 2
    for checkout in checkouts:
        print(f"{checkout.label}: {checkout.commit} in {checkout.root} ({checkout.python}; {checkout.libraries})",
              flush=True)
    if args.prepare_only:
        return 0
    started = time.time()
    models = list(dict.fromkeys(cell.model for cell in args.cells))
    same_models = sameness(checkouts, models)
    args.models = checkouts[1].models  # the in-process run computes the head's model files
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-revisions-") as tmp:
        compute = {m: in_process(args, m, sorted({c.batch for c in args.cells if c.model == m})) for m in models}
        print("in-process:", json.dumps(compute), flush=True)
        runs = measure(args, checkouts, Path(tmp))
    load_after = os.getloadavg()
    rows = summarize(args.cells, runs, compute)
    command = command_line("-m bench.revisions", argv)
    text = report(args, checkouts, rows, same_models, command, load_before, load_after,
                  time.time() - started)
    publish(SECTION, text, args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
