"""NumPy reference forward pass vs onnxruntime on the same model, threads and batch: images/s and ratio.

    python -m bench.reference_vs_onnxruntime [--threads 2] [--write]

Both sides get the same thread count: onnxruntime's intra-op pool, and NumPy's BLAS through the
environment (set before NumPy loads: the script starts itself again with them) and threadpoolctl. Each cell is the median of timed runs
after warm-up. ``--write`` puts the table, the command and the machine into docs/BENCHMARKS.md
between this script's markers, leaving the other sections alone. Target: at batch 64 NumPy
within 4x of onnxruntime.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import onnxruntime as ort
from threadpoolctl import threadpool_info, threadpool_limits

from bench.report import machine, median_seconds, write_section
from exporter.architectures import ARCHITECTURES
from exporter.onnx_export import export_onnx

SECTION = "reference-vs-onnxruntime"
TARGET_RATIO = 4.0
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.reference_vs_onnxruntime", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="threads for both onnxruntime and BLAS (default 2)")
    p.add_argument("--models", nargs="+", default=["cifar-tiny", "cifar-vgg"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    p.add_argument("--min-time", type=float, default=1.0, help="seconds of timed runs per cell (at least 5 runs)")
    p.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    return p.parse_args(argv)


def with_thread_environment(threads: int) -> None:
    """Run this benchmark again in a fresh interpreter whose BLAS thread variables say ``threads``,
    unless they already do: BLAS reads them when NumPy loads, before any flag is parsed."""
    wanted = {var: str(threads) for var in THREAD_VARIABLES}
    if any(os.environ.get(var) != value for var, value in wanted.items()):
        os.execve(sys.executable, [sys.executable, "-m", "bench.reference_vs_onnxruntime", *sys.argv[1:]],
                  {**os.environ, **wanted})


def session(onnx_bytes: bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def measure(model: str, batches: list[int], threads: int, min_time: float) -> list[dict]:
    net = ARCHITECTURES[model].build(model)
    params = net.init_params(0)
    sess = session(export_onnx(net, params), threads)
    rows = []
    for batch in batches:
        x = np.random.default_rng(batch).standard_normal((batch, *net.input_shape)).astype(np.float32)
        ref, got = net.predict(x, params), sess.run(["scores"], {"input": x})[0]
        assert np.abs(ref - got).max() <= 2e-5 * np.abs(ref).max(), "NumPy and onnxruntime disagree"
        t_np = median_seconds(lambda: net.predict(x, params), min_time)
        t_ort = median_seconds(lambda: sess.run(["scores"], {"input": x}), min_time)
        rows.append({"model": model, "batch": batch, "numpy": batch / t_np, "onnxruntime": batch / t_ort, "ratio": t_np / t_ort})
    return rows


def blas() -> str:
    return ", ".join(f"{i.get('internal_api')} {i.get('version')}" for i in threadpool_info()
                     if i.get("user_api") == "blas") or "unknown"


def table(rows: list[dict], threads: int) -> str:
    lines = ["| model | batch | NumPy images/s | onnxruntime images/s | NumPy time / onnxruntime time |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['batch']} | {r['numpy']:,.0f} | {r['onnxruntime']:,.0f} | {r['ratio']:.2f}x |")
    verdicts = [f"{r['model']} {r['ratio']:.2f}x" for r in rows if r["batch"] == 64]
    met = all(r["ratio"] <= TARGET_RATIO for r in rows if r["batch"] == 64)
    verdict = ("met" if met else "MISSED") if verdicts else "not checked"
    lines.append("")
    lines.append(f"Target (batch 64, NumPy within {TARGET_RATIO:g}x of onnxruntime, {threads} threads each): "
                 f"{verdict} ({', '.join(verdicts) or 'batch 64 not measured'}).")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    with_thread_environment(args.threads)
    with threadpool_limits(limits=args.threads):
        rows = [r for model in args.models for r in measure(model, args.batches, args.threads, args.min_time)]
    result = table(rows, args.threads)
    print(result)
    if args.write:
        command = "python -m bench.reference_vs_onnxruntime " + " ".join(sys.argv[1:])
        text = (f"## NumPy reference vs onnxruntime\n\nForward pass only, float32, He-initialized weights (seed 0), "
                f"median of timed runs after warm-up; both sides limited to {args.threads} threads.\n\n"
                f"Command: `{command.strip()}`  \nMachine: {machine()}; BLAS {blas()}\n\n{result}")
        print(f"wrote {write_section(SECTION, text)}")


if __name__ == "__main__":
    main()
