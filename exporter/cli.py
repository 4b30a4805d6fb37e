"""``python -m exporter``: list, summarize and build architectures, import an ONNX model, and run
the reference forward pass.

Subcommands are ``Command`` entries in ``COMMANDS``; adding one is an entry in that list. Every
error is one line on stderr and a non-zero exit status.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PROG = "python -m exporter"


class CliError(Exception):
    """An error already phrased for the user."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (and exit status 2)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]


def _list(args: argparse.Namespace) -> None:
    from .architectures import ARCHITECTURES

    rows = [("architecture", "input (WxHxD)", "parameters", "description")]
    for name, arch in ARCHITECTURES.items():
        network = arch.build(name)
        c, h, w = network.input_shape
        rows.append((name, f"{w}x{h}x{c}", f"{network.num_params():,}", arch.description))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}")


def _summary_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="ARCH|SPEC|REPO/MODEL",
                   help="a built-in architecture name, a layer-pattern spec, or a model directory of a repository")
    p.add_argument("--version", help="with REPO/MODEL: the version (default: the newest)")
    p.add_argument("--json", action="store_true", help="print totals and layers as JSON (params, activations, macs, layers)")


def _summary(args: argparse.Namespace) -> None:
    from .architectures import resolve
    from .repository import CONFIG, load_reference
    from .summary import summarize

    path = Path(args.model)
    if (path / CONFIG).is_file():
        network = load_reference(path, args.version)[0]
    elif args.version is not None:
        raise CliError(f"--version needs a model directory (REPO/MODEL with a {CONFIG}), got {args.model!r}")
    else:
        network = resolve(args.model).network
    summary = summarize(network)
    print(json.dumps(summary.to_json(), indent=2) if args.json else summary.table())


def _build_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="ARCH|SPEC", help="a built-in architecture name or a layer-pattern spec")
    p.add_argument("--out", required=True, type=Path, metavar="REPO", help="the model repository directory")
    p.add_argument("--name", help="model name in the repository (default: the architecture; required for a spec)")
    p.add_argument("--seed", type=int, default=0, help="seed of the He initialization (default 0)")
    p.add_argument("--version", type=int, help="version number (default: the next free one)")
    p.add_argument("--fully-convolutional", action="store_true",
                   help="convert FC layers to CONV layers; export with dynamic height and width")
    p.add_argument("--overwrite", action="store_true", help="replace the version if it exists")


def _build(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from .build import build

    if args.name is None and args.model.strip().upper().startswith("INPUT"):
        raise CliError("--name is required when building from a spec")
    steps = 4 + args.fully_convolutional
    with tqdm(total=steps, desc=args.name or args.model, unit="step", file=sys.stderr, disable=None) as bar:
        started = []

        def progress(what: str) -> None:
            if started:
                bar.update(1)
            started.append(what)
            bar.set_postfix_str(what)

        path = build(args.model, args.out, name=args.name, seed=args.seed, version=args.version,
                     fully_convolutional=args.fully_convolutional, overwrite=args.overwrite, progress=progress)
        bar.update(1)
    print(f"wrote {path}")


def _import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", type=Path, metavar="MODEL.onnx", help="an ONNX ConvNet (torch.onnx.export, tf2onnx)")
    p.add_argument("--name", required=True, help="model name in the repository")
    p.add_argument("--out", required=True, type=Path, metavar="REPO", help="the model repository directory")
    p.add_argument("--labels", type=Path, metavar="FILE", help="class labels, one per line or a JSON list (default class_<i>)")
    p.add_argument("--preprocessing", default="imagenet", metavar="imagenet|none|FILE.json",
                   help="imagenet: ImageNet mean/std at the model's input size (default); none: pixels scaled to "
                        "[0, 1]; a JSON file: preprocessing fields laid over none")
    p.add_argument("--version", type=int, help="version number (default: the next free one)")
    p.add_argument("--overwrite", action="store_true", help="replace the version if it exists")


def _import(args: argparse.Namespace) -> None:
    from .importing import import_model

    path, _ = import_model(args.source, args.out, name=args.name, labels=args.labels, preprocessing=args.preprocessing,
                           version=args.version, overwrite=args.overwrite, progress=print)
    print(f"wrote {path}")


def _reference_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", type=Path, metavar="REPO/MODEL", help="a model directory of the repository")
    p.add_argument("--input", required=True, type=Path, metavar="X.npy", help="float32 batch (N, C, H, W)")
    p.add_argument("--output", required=True, type=Path, metavar="SCORES.npy", help="where to write the scores")
    p.add_argument("--version", help="model version (default: the newest)")


def _reference(args: argparse.Namespace) -> None:
    from .repository import reference_forward

    try:
        x = np.load(args.input, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CliError(f"--input {args.input}: cannot read a .npy array ({e})") from e
    scores = reference_forward(args.model_dir, x, args.version)
    np.save(args.output, scores)
    print(f"wrote scores {scores.shape} to {args.output}")


COMMANDS: list[Command] = [
    Command("list", "architectures with input shape and parameter count", lambda p: None, _list),
    Command("summary", "per-layer volumes, parameters, activations and multiply-adds", _summary_args, _summary),
    Command("build", "write a model (ONNX, graph, weights) into a model repository", _build_args, _build),
    Command("import", "import an ONNX ConvNet: map it onto the NumPy layers, check it against onnxruntime, write it",
            _import_args, _import),
    Command("reference", "the NumPy forward pass from a repository's weights", _reference_args, _reference),
]


def main(argv: list[str] | None = None, *, prog: str = PROG, commands: list[Command] | None = None,
         description: str = __doc__.split("\n\n")[0]) -> int:
    """Run one of ``commands`` (default: the exporter's) as ``prog``; ``python -m training`` uses it too."""
    parser = OneLineParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    for command in COMMANDS if commands is None else commands:
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except (CliError, ValueError, OSError, KeyError) as e:
        message = " ".join(str(e).split()) if not isinstance(e, KeyError) else f"missing {e}"
        print(f"{prog} {args.command}: error: {message}", file=sys.stderr)
        return 1
