"""NumPy reference forward pass vs onnxruntime on the same model, threads and batch: images/s and ratio.

    python bench/reference_vs_onnxruntime.py [--threads 2] [--write]

Both sides get the same thread count: onnxruntime's intra-op pool, and NumPy's BLAS through the
environment (set before NumPy loads) and threadpoolctl. Each cell is the median of timed runs
after warm-up. ``--write`` puts the table, the command and the machine into docs/BENCHMARKS.md
between this script's markers, leaving the other sections alone. Target: at batch 64 NumPy
within 4x of onnxruntime.
"""
from __future__ import annotations

import argparse
import os
import sys

SECTION = "reference-vs-onnxruntime"
TARGET_RATIO = 4.0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="threads for both onnxruntime and BLAS (default 2)")
    p.add_argument("--models", nargs="+", default=["cifar-tiny", "cifar-vgg"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    p.add_argument("--min-time", type=float, default=1.0, help="seconds of timed runs per cell (at least 5 runs)")
    p.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    return p.parse_args()


ARGS = parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.report import machine, median_seconds, write_section  # noqa: E402
from exporter.architectures import ARCHITECTURES  # noqa: E402
from exporter.onnx_export import export_onnx  # noqa: E402


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
    with threadpool_limits(limits=ARGS.threads):
        rows = [r for model in ARGS.models for r in measure(model, ARGS.batches, ARGS.threads, ARGS.min_time)]
    result = table(rows, ARGS.threads)
    print(result)
    if ARGS.write:
        command = "python bench/reference_vs_onnxruntime.py " + " ".join(sys.argv[1:])
        text = (f"## NumPy reference vs onnxruntime\n\nForward pass only, float32, He-initialized weights (seed 0), "
                f"median of timed runs after warm-up; both sides limited to {ARGS.threads} threads.\n\n"
                f"Command: `{command.strip()}`  \nMachine: {machine()}; BLAS {blas()}\n\n{result}")
        print(f"wrote {write_section(SECTION, text)}")


if __name__ == "__main__":
    main()
