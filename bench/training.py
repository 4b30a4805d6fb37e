"""Training benchmarks: LeNet-5 on the scikit-learn digits, and (``--data fashion-mnist``) the
Fashion-MNIST model with NumPy vs PyTorch throughput and plots (bench/training_fashion.py).

Digits: LeNet-5 on 1,317 training images at 32x32 (120 more held out for validation).

For each optimizer it trains the default recipe from the same initialization and reports the
training throughput (images per second through forward, backward and update; evaluation excluded),
the training time until the validation accuracy first reached 97%, and the test accuracy. The table
goes into docs/BENCHMARKS.md between the ``<!-- training -->`` markers, with the command and the
machine (and its load average: the machine may be shared).

    python -m bench.training [--epochs 20] [--optimizers adam sgd] [--no-write]
    python -m bench.training --data fashion-mnist [--threads 1] [--batch 64] [--rounds 5] [--no-write]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import time

from bench import ROOT
from bench.report import machine, write_section
from exporter.architectures import resolve
from training.digits import load_digits_split
from training.model import VAL_FRACTION
from training.train import TrainConfig, train


SECTION = "training"
TARGET = 0.97
RECIPES = {
    "adam": TrainConfig(optimizer="adam", lr=2e-3),
    "sgd": TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9),
}


def run(name: str, config: TrainConfig, epochs: int, seed: int) -> dict:
    split = load_digits_split().with_validation(VAL_FRACTION)
    network = resolve("lenet5").network
    config = dataclasses.replace(config, epochs=epochs, seed=seed)
    start = time.perf_counter()
    result = train(network, network.init_params(seed), split, config, progress=False)
    wall = time.perf_counter() - start
    images = epochs * len(split.train_labels)
    epoch_to_target = next((h.epoch for h in result.history if h.val_accuracy >= TARGET), None)
    to_target = None if epoch_to_target is None else sum(h.train_seconds for h in result.history[:epoch_to_target])
    return {
        "optimizer": name, "lr": config.lr, "batch": config.batch_size, "epochs": epochs,
        "images_per_s": images / result.train_seconds, "train_s": result.train_seconds, "wall_s": wall,
        "to_target_s": to_target, "epoch_to_target": epoch_to_target, "accuracy": result.test_accuracy,
    }


def table(rows: list[dict]) -> str:
    head = ("| optimizer (lr, batch) | epochs | train images/s | training time | wall time (with evaluation) "
            f"| time to {TARGET:.0%} validation acc. (epoch) | test accuracy (best epoch) |")
    lines = [head, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        target = "not reached" if r["to_target_s"] is None else f"{r['to_target_s']:.1f} s (epoch {r['epoch_to_target']})"
        lines.append(
            f"| {r['optimizer']} ({r['lr']:g}, {r['batch']}) | {r['epochs']} | {r['images_per_s']:,.0f} | {r['train_s']:.1f} s "
            f"| {r['wall_s']:.1f} s | {target} | {r['accuracy']:.2%} ({round(r['accuracy'] * 360)}/360) |"
        )
    return "\n".join(lines)


def section(rows: list[dict], command: str, load_before: tuple[float, ...], load_after: tuple[float, ...]) -> str:
    threads = os.environ.get("OMP_NUM_THREADS") or os.environ.get("OPENBLAS_NUM_THREADS") or "default"
    return "\n".join([
        "## Training LeNet-5 on the digits (NumPy)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine()} (BLAS threads: {threads}). Load average before / after: "
        f"{' '.join(f'{v:.2f}' for v in load_before)} / {' '.join(f'{v:.2f}' for v in load_after)} "
        "(the machine was shared with other work while this ran, so the times are upper bounds).",
        "",
        "Data: scikit-learn's digits, 8x8 upscaled bilinearly to 32x32, 1,317 training, 120 validation and 360 "
        "test images (stratified, split seed 0); recipe: cosine schedule with one warm-up epoch, L2 weight decay 1e-4 on "
        "CONV/FC weights, random shifts of up to 2 pixels, init and shuffle seed 0. Images/s counts forward, "
        "backward and update over the training images; the training time excludes the per-epoch validation.",
        "",
        table(rows),
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--optimizers", nargs="+", choices=sorted(RECIPES), default=["adam", "sgd"])
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--data", choices=("digits", "fashion-mnist"), default="digits")
    parser.add_argument("--threads", type=int, default=1, help="fashion-mnist: BLAS/PyTorch threads for both trainers")
    parser.add_argument("--batch", type=int, default=64, help="fashion-mnist: batch size of the throughput comparison")
    parser.add_argument("--rounds", type=int, default=5, help="fashion-mnist: alternating timing rounds")
    parser.add_argument("--steps", type=int, default=10, help="fashion-mnist: training steps per round")
    args = parser.parse_args(argv)
    if args.data == "fashion-mnist":
        from bench import training_fashion

        text = training_fashion.main(args)
        print(text)
        if not args.no_write:
            print(f"wrote {write_section('training-fashion', text).relative_to(ROOT)}")
        return 0
    load_before = os.getloadavg()
    rows = [run(name, RECIPES[name], args.epochs, args.seed) for name in args.optimizers]
    load_after = os.getloadavg()
    command = "python -m bench.training" + "".join(
        f" {flag} {value}" for flag, value, default in
        (("--epochs", args.epochs, 20), ("--seed", args.seed, 0)) if value != default
    ) + ("" if args.optimizers == ["adam", "sgd"] else " --optimizers " + " ".join(args.optimizers))
    text = section(rows, command, load_before, load_after)
    print(text)
    if not args.no_write:
        print(f"wrote {write_section(SECTION, text).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
