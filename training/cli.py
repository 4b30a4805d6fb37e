"""``python -m training``: train a model into a model repository, and build the default repository.

The commands share the exporter's command table and one-line errors (``exporter.cli``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from exporter.cli import Command, main as run_command

PROG = "python -m training"

DEFAULT_LR = {"adam": 2e-3, "sgd": 0.05}


def train_arguments(p: argparse.ArgumentParser) -> None:
    from .datasets import DATASETS

    p.add_argument("model", metavar="ARCH|SPEC", help="a built-in architecture name or a layer-pattern spec (1 channel)")
    p.add_argument("--data", choices=sorted(DATASETS), default="digits", help="the dataset (default digits)")
    p.add_argument("--out", required=True, type=Path, metavar="REPO", help="the model repository directory")
    p.add_argument("--name", help="model name in the repository (default <data>-<arch>; required for a spec)")
    p.add_argument("--epochs", type=int, default=20, help="passes over the training images (default 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialization and training order (default 0)")
    p.add_argument("--optimizer", choices=sorted(DEFAULT_LR), default="adam", help="update rule (default adam)")
    p.add_argument("--lr", type=float, help=f"peak learning rate (default {DEFAULT_LR})")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    p.add_argument("--batch-size", type=int, default=32, help="images per mini-batch (default 32)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="L2 on CONV/FC weights, not biases (default 1e-4)")
    p.add_argument("--schedule", choices=("cosine", "step", "constant"), default="cosine",
                   help="learning-rate schedule (default cosine with warm-up)")
    p.add_argument("--warmup-epochs", type=int, default=1, help="linear warm-up of the cosine schedule (default 1)")
    p.add_argument("--augment-shift", type=int, default=2, help="random shifts of up to N pixels (default 2; 0: none)")
    p.add_argument("--augment-flip", action="store_true", help="mirror a random half of each batch (clothes, not digits)")
    p.add_argument("--train-subset", type=int, metavar="N", help="train on the first N training images only (quick runs)")
    p.add_argument("--weights-out", type=Path, metavar="NPZ", help="also write the weights as a checked float16 file")
    p.add_argument("--version", type=int, help="version number (default: the next free one)")
    p.add_argument("--overwrite", action="store_true", help="replace the version if it exists")


def run_train(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from .train import TrainConfig
    from .model import train_model

    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
        lr=DEFAULT_LR[args.optimizer] if args.lr is None else args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, schedule=args.schedule, warmup_epochs=args.warmup_epochs,
        augment_shift=args.augment_shift, augment_flip=args.augment_flip, seed=args.seed,
    )
    train_model(args.model, args.out, data=args.data, name=args.name, config=config, version=args.version,
                overwrite=args.overwrite, progress=True, log=tqdm.write, train_subset=args.train_subset,
                weights_out=args.weights_out)


def defaults_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, type=Path, metavar="REPO", help="the model repository directory")


def run_defaults(args: argparse.Namespace) -> None:
    from .defaults import ensure_defaults

    ensure_defaults(args.out)


COMMANDS: list[Command] = [
    Command("train", "train on a dataset (digits, fashion-mnist) with gradient descent; write the trained model",
            train_arguments, run_train),
    Command("defaults", "build the default models (fashion, digits-lenet5, cifar-tiny, cifar-vgg) where missing",
            defaults_arguments, run_defaults),
]


def main(argv: list[str] | None = None) -> int:
    return run_command(argv, prog=PROG, commands=COMMANDS, description=__doc__.split("\n\n")[0])
