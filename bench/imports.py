"""Imported torchvision ConvNets: how long `python -m exporter import` takes (graph mapping plus the
reference check against onnxruntime), and the NumPy reference's time per image against onnxruntime's.

    python -m bench.imports [--rounds 3] [--batch 4] [--write]

Each net is exported by torch with seeded weights (bench/torchvision_nets.py, not timed), imported
into a temporary repository (timed, once), then both forward passes run the same batch in
interleaved rounds (in each round every model's NumPy and onnxruntime cell: the median of at least
3 runs and 0.5 s), 2 threads each. Figures are medians over the rounds; the ratio is the median of
the per-round ratios. The import
of resnet50 at 224 with its reference check must take under a minute.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from threadpoolctl import threadpool_limits

from bench.report import machine, median_seconds, publish
from bench.torchvision_nets import ARCHITECTURES, write
from exporter.importing import import_model
from exporter.repository import load_reference

SECTION = "imports"
THREADS = 2
IMPORT_LIMIT_S = 60.0
MIN_TIME_S = 0.5
"""Each cell of a round is the median of at least 3 runs and this many seconds."""
CASES = [(arch, size) for arch, size in ARCHITECTURES.items()] + [("resnet50", 224)]


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(rounds: int, batch: int, work: Path) -> list[dict]:
    loaded, rows = [], []
    for arch, size in CASES:
        label = f"{arch}@{size}"
        source = work / f"{arch}-{size}.onnx"
        write(arch, source, seed=0, size=size)
        import_s = _timed(lambda: import_model(source, work / "repo", name=f"{arch}-{size}"))
        network, params, config = load_reference(work / "repo" / f"{arch}-{size}")
        session = _session(work / "repo" / f"{arch}-{size}" / "1" / "model.onnx")
        x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
        feed = {config["input"]["name"]: x}
        network.predict(x, params), session.run(None, feed)  # warm-up
        loaded.append((label, network, params, session, feed))
        rows.append({"model": label, "params": network.num_params(), "import_s": import_s, "numpy": [], "onnxruntime": []})
        print(f"{label}: imported in {import_s:.1f} s", flush=True)
    for r in range(rounds):
        for row, (label, network, params, session, feed) in zip(rows, loaded):
            x = next(iter(feed.values()))
            row["numpy"].append(median_seconds(lambda: network.predict(x, params), MIN_TIME_S, warmup=0, min_runs=3) / batch)
            row["onnxruntime"].append(median_seconds(lambda: session.run(None, feed), MIN_TIME_S, warmup=0, min_runs=3) / batch)
        print(f"round {r + 1}/{rounds} done", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model@input | parameters | import + reference check | NumPy ms/image | onnxruntime ms/image | NumPy / onnxruntime |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        ratio = statistics.median(n / o for n, o in zip(r["numpy"], r["onnxruntime"]))
        lines.append(f"| {r['model']} | {r['params']:,} | {r['import_s']:.1f} s | {1e3 * statistics.median(r['numpy']):.1f} "
                     f"| {1e3 * statistics.median(r['onnxruntime']):.1f} | {ratio:.2f}x |")
    big = next(r for r in rows if r["model"] == "resnet50@224")
    verdict = "met" if big["import_s"] < IMPORT_LIMIT_S else "MISSED"
    lines += ["", f"Target (the import of resnet50 at 224 with its reference check under {IMPORT_LIMIT_S:.0f} s): "
                  f"{verdict} ({big['import_s']:.1f} s)."]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (default 3)")
    p.add_argument("--batch", type=int, default=4, help="images per forward pass (default 4)")
    p.add_argument("--write", action="store_true", help="put the section into docs/BENCHMARKS.md")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-imports-") as work, threadpool_limits(limits=THREADS):
        rows = measure(args.rounds, args.batch, Path(work))
    command = f"python -m bench.imports --rounds {args.rounds} --batch {args.batch}"
    text = (f"## Imported torchvision ConvNets: import time, NumPy reference vs onnxruntime\n\n"
            f"torchvision 0.28 nets exported by torch 2.13 (TorchScript exporter, opset 17) with seeded random weights "
            f"and measured batch-norm statistics, imported with `python -m exporter import` (timed: mapping, the ONNX "
            f"checks, the shape probe and the 4-image reference check; the export is not timed). Forward passes: batch "
            f"{args.batch}, {THREADS} threads each, {args.rounds} interleaved rounds (a cell: median of at least 3 runs and "
            f"{MIN_TIME_S:g} s), medians over rounds; the ratio is the median of "
            f"per-round ratios. The machine is shared with other jobs, so absolute times drift between runs; the "
            f"ratios, measured within one run, drift less.\n\nCommand: `{command}`  \nMachine: {machine()}\n\n{table(rows)}")
    publish(SECTION, text, args.write)


if __name__ == "__main__":
    main()
