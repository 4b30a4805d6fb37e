"""The "against Triton" section of docs/BENCHMARKS.md (bench/vs_triton.py): how the run was made,
the table, the references, the incidents and which server code the figures measure."""
from __future__ import annotations

import os
import subprocess

from bench.checkouts import commit_of
from bench.launcher import ROOT
from bench.processes import cores_text
from bench.report import machine
from bench.vs_triton_table import Cell, reference_lines, seconds_of, table, targets_line


def report(args, onnxruntime: str, rows, identical: dict[str, str], skipped: list[Cell], incidents: list[str],
           command: str, load: tuple, seconds: float, design: str) -> str:
    references = reference_lines(rows)
    errors = [f"{row.cell}: {row.errors}" for row in rows if row.errors]
    instances = f"{args.triton_instances} instance{'s' if args.triton_instances > 1 else ''}"
    return "\n".join([
        "## Against Triton: this server and the real Triton Inference Server on one core",
        "",
        f"Command: `{command}` ({seconds / 60:.1f} min)  ",
        f"Machine: {machine()}; Triton 2.51.0 from nvidia-pytriton 0.7.0 with onnxruntime {onnxruntime} "
        f"in its Python backend. Load average before / after: {' '.join(f'{x:.2f}' for x in load[0])} / "
        f"{' '.join(f'{x:.2f}' for x in load[1])}: the machine was shared with other work while measured, so "
        "single figures carry noise; the ratios compare runs seconds apart within each round"
        + (f". The load average exceeded the {os.cpu_count()} cores several times over, so the ranges are wide and "
           "a ratio is an indication, not a verdict; re-run on a quiet machine to judge the targets."
           if min(load[0][0], load[1][0]) > 2 * (os.cpu_count() or 1) else "."),
        "",
        "Both servers serve the same ONNX files, pinned to "
        f"{cores_text(args.server_cores)}: this server as `python -m service serve --intra-op-threads 1 "
        "--instances 1` (its shipped batching: max_batch_size from config.json, no queue delay); Triton with "
        "its C++ gRPC/HTTP front-ends and dynamic batcher configured from the same config.json, "
        f"{instances} per model, the model step in its **Python backend** (one onnxruntime session per "
        "instance with this server's session options, 1 intra-op thread, each dynamic batch one "
        "`session.run`; NVIDIA's onnxruntime backend ships only in its container). Scores checked first, 4 "
        "images per model through both: " + ", ".join(f"{m} {v}" for m, v in identical.items()) + ".",
        "",
        f"Clients on {cores_text(args.client_cores)}, closed loop, 1 image per request, {args.duration:g} s per "
        f"run{''.join(f' ({m}: {seconds_of(args, m):g} s)' for m in args.models if seconds_of(args, m) > args.duration)}"
        f" after {args.warmup:g} s warm-up, {args.rounds} interleaved round(s) (the servers of a cell back to "
        "back, the order reversed every other round and cell): *tritonclient* = NVIDIA's `tritonclient.grpc.aio` "
        "(a Python client, one channel; at high c it can be the bottleneck), *h2load* = nghttp2's C client "
        "replaying one ModelInfer over one HTTP/2 connection with c streams, *HTTP* = `h2load --h1`, c "
        "connections, KServe binary tensor extension. img/s = median over the rounds (range in parentheses); "
        "p50 / p99 = medians of the rounds' percentiles; ratios = median of the rounds' ratios (range). Errors: "
        "calls the client saw fail, answers the server's own metrics did not count as OK "
        "(convnet_requests_total, nv_inference_request_success), and server-side failures beyond the c calls "
        "h2load abandons when it stops.",
        "",
        table(rows),
        "",
        targets_line(rows),
        "",
        *(["References on the same core (`python -m bench.echo_sync`: grpc.server with 8 handler threads "
           "returning cached replies of the real size, no work; Triton with one instance per model):", "",
           *references, ""] if references else []),
        "Why Triton runs two instances: with one instance, Triton 2.51 here stalls about 500 ms (its scheduler "
        "thread's idle wait) whenever a request arrives while the instance is being released, which a fast "
        "client (h2load) hits on most requests: see the *Triton with one instance* reference above. A second "
        "instance on the same core keeps a free slot and removes most of the stalls (a p99 near 500 ms in a "
        "Triton cell is one left); it is what a Triton user would configure, and `--triton-instances 1` "
        "measures the other.",
        "",
        *([f"Left out at this duration (a batch of 64 images takes seconds on one core): "
           f"{', '.join(map(str, skipped))}.", ""] if skipped else []),
        *([f"Cells with errors: {'; '.join(errors)}.", ""] if errors else []),
        *([f"During the run (each failed run was made again, a server that exited restarted first): "
           f"{'; '.join(incidents)}.", ""] if incidents else []),
        design,
    ])


DESIGN_BASE = "fae27cc"
"""The commit whose server design (the asyncio gRPC transport, the two-place batch queue) issue 23 measured."""


def design_note() -> str:
    """Which server code a run measures: this checkout's commit, and whether its service/ is still
    that of DESIGN_BASE (asked when the run starts, kept in its record)."""
    commit = commit_of(ROOT)
    same = subprocess.run(["git", "diff", "--quiet", DESIGN_BASE, "HEAD", "--", "service"], cwd=ROOT,
                          capture_output=True).returncode == 0
    return (f"Server measured: this checkout at `{commit}`; "
            + (f"its service/ is that of {DESIGN_BASE}, so these figures measure {DESIGN_BASE}'s design (the asyncio "
               "gRPC transport and the two-place batch queue)." if same else
               f"its service/ differs from {DESIGN_BASE}'s (the design issue 23 measured)."))
