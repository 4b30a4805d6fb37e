"""bench/revisions.py: its arguments, its arithmetic and its section without servers, and one short
real run comparing HEAD with itself."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.checkouts import Checkout
from bench.report import write_section
from bench.revisions import SECTION, parse_args, report, sameness
from bench.revisions_table import DEFAULT_CELLS, KINDS, Cell, Ratio, parse_cell, summarize, table

ROOT = Path(__file__).resolve().parents[2]


def test_arguments_default_to_the_five_cells_and_three_rounds():
    args = parse_args(["--base", "f54fd12"])
    assert args.base == "f54fd12" and args.head == ROOT and args.rounds == 3 and args.duration == 5.0
    assert args.cells == list(DEFAULT_CELLS) and len(args.cells) == 5
    assert args.server_cores == {0} and args.client_cores == {1} and args.threads == 1
    args = parse_args(["--base", "HEAD", "--cells", "cifar-tiny:1:64", "cifar-tiny:1:64", "cifar-vgg:8:8",
                       "--rounds", "1", "--duration", "0.5"])
    assert args.cells == [Cell("cifar-tiny", 1, 64), Cell("cifar-vgg", 8, 8)]  # a repeated cell runs once


@pytest.mark.parametrize("argv, message", [
    ([], "the following arguments are required: --base"),
    (["--base", "HEAD", "--cells", "cifar-vgg:8"], "expected MODEL:B:C"),
    (["--base", "HEAD", "--cells", "cifar-vgg:0:8"], "expected MODEL:B:C with B, C >= 1"),
    (["--base", "HEAD", "--rounds", "0"], "--rounds: expected an integer >= 1, got 0"),
    (["--base", "HEAD", "--server-cores", "0", "--client-cores", "0"], "expected two disjoint sets of the cores"),
])
def test_bad_arguments_exit_2_with_what_was_expected(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_a_cell_is_model_batch_and_concurrency():
    assert parse_cell("cifar-vgg:8:64") == Cell("cifar-vgg", 8, 64)
    assert str(Cell("cifar-vgg", 8, 64)) == "cifar-vgg B=8 C=64"


def load(images_per_s: float, errors: int = 0) -> dict:
    return {"images_per_s": images_per_s, "error_count": errors}


def test_ratios_are_medians_of_the_rounds_ratios_and_speeds_medians_of_the_rounds():
    cell = Cell("cifar-vgg", 8, 64)
    speeds = {("base", "on"): [100, 200, 110], ("head", "on"): [90, 220, 121],
              ("base", "off"): [50, 100, 100], ("head", "off"): [50, 100, 120]}
    runs = {(cell, *kind): [load(v, errors=1 if kind == ("head", "off") and v == 120 else 0) for v in speeds[kind]]
            for kind in KINDS}
    [row] = summarize([cell], runs, {"cifar-vgg": {8: {"images_per_s": 400.0}}})
    assert row.images_per_s == {("base", "on"): 110, ("head", "on"): 121, ("base", "off"): 100, ("head", "off"): 100}
    assert row.head_over_base["on"] == Ratio(1.1, 0.9, 1.1)  # 0.9, 1.1, 1.1 by round, not 121 / 110
    assert row.head_over_base["off"] == Ratio(1.0, 1.0, 1.2)
    assert row.on_over_off["base"] == Ratio(2.0, 1.1, 2.0) and row.on_over_off["head"].median == pytest.approx(1.8)
    assert row.on_over_in_process("base") == pytest.approx(110 / 400)
    assert row.errors == 1
    [header, rule, line] = table([row]).splitlines()
    assert header.startswith("| model | B | C | in-process | base on | head on | head/base on |")
    assert line.split("|")[1:-1] == [" cifar-vgg ", " 8 ", " 64 ", " 400 ", " 110 ", " 121 ", " 1.10 (0.90-1.10) ",
                                     " 100 ", " 100 ", " 1.00 (1.00-1.20) ", " 2.00 (1.10-2.00) ",
                                     " 1.80 (1.01-2.20) ", " 0.28 ", " 0.30 ", " 1 "]
    assert rule.count("---|") == len(header.split("|")) - 2
    assert str(Ratio(0.97, 0.97, 0.97)) == "0.97"  # one round: no range


def test_the_section_names_the_command_both_commits_and_replaces_itself(tmp_path):
    cell = Cell("cifar-tiny", 1, 64)
    runs = {(cell, *kind): [load(1000.0)] for kind in KINDS}
    rows = summarize([cell], runs, {"cifar-tiny": {1: {"images_per_s": 2000.0}}})
    checkouts = tuple(Checkout(label, commit, tmp_path, sys.executable, tmp_path / "models", True, "onnxruntime x")
                      for label, commit in (("base", "a" * 40), ("head", "b" * 40 + " + uncommitted changes")))
    args = parse_args(["--base", "HEAD", "--cells", "cifar-tiny:1:64", "--rounds", "1"])
    text = report(args, checkouts, rows, {"cifar-tiny": "graph"}, "python -m bench.revisions --base HEAD",
                  (1.0, 1.0, 1.0), (2.0, 2.0, 2.0), 90)
    assert "Command: `python -m bench.revisions --base HEAD` (1.5 min)" in text and "Machine: " in text
    assert f"*base* = `{'a' * 40}`" in text and f"*head* = `{'b' * 40} + uncommitted changes`" in text
    assert "cifar-tiny: both serve the same ONNX graph and weights (the files differ only in metadata)." in text
    assert "| cifar-tiny | 1 | 64 | 2,000 | 1,000 |" in text
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\n<!-- other -->\nkept\n<!-- /other -->\n")
    write_section(SECTION, "first", doc)
    write_section(SECTION, text, doc)
    written = doc.read_text()
    assert written.count("<!-- revisions -->") == 1 and "first" not in written and "kept" in written
    assert written.rstrip().endswith(text + "\n<!-- /revisions -->")


def write_model(repo: Path, weight: float, note: str, version: int = 1) -> Checkout:
    """A one-node ONNX model ``m`` (Mul by ``weight``) with ``note`` in its metadata, in ``repo``."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
                              [numpy_helper.from_array(np.array([weight], np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"note": note})
    (repo / "m" / str(version)).mkdir(parents=True)
    onnx.save(model, str(repo / "m" / str(version) / "model.onnx"))
    return Checkout(repo.name, "c" * 40, repo, sys.executable, repo, True, "")


def test_sameness_tells_the_same_file_from_the_same_graph_from_another_computation(tmp_path):
    a = write_model(tmp_path / "a", 2.0, "old")
    assert sameness((a, write_model(tmp_path / "b", 2.0, "old")), ["m"]) == {"m": "file"}
    assert sameness((a, write_model(tmp_path / "c", 2.0, "new")), ["m"]) == {"m": "graph"}
    assert sameness((a, write_model(tmp_path / "d", 3.0, "old")), ["m"]) == {"m": ""}
    newer = write_model(tmp_path / "e", 2.0, "old")
    write_model(tmp_path / "e", 3.0, "old", version=2)  # the newest version is the one compared
    assert sameness((a, newer), ["m"]) == {"m": ""}


@pytest.mark.slow
def test_a_short_real_run_of_head_against_itself(tmp_path, model_repo):
    """HEAD prepared as the base (its own worktree, venv and models under tmp_path), one cell, one round."""
    cache = tmp_path / "cache"
    try:
        done = subprocess.run([sys.executable, "-m", "bench.revisions", "--base", "HEAD", "--cache", str(cache),
                               "--cells", "cifar-tiny:1:8", "--rounds", "1", "--duration", "0.5", "--warmup", "0"],
                              cwd=ROOT, capture_output=True, text=True, timeout=1200)
    finally:
        for tree in cache.glob("*/.git"):
            subprocess.run(["git", "worktree", "remove", "--force", str(tree.parent)], cwd=ROOT, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [row] = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| cifar-tiny | 1 | 8 |")]
    assert len(row) == 15 and row[-1].strip() == "0"
    number = [float("nan")] + [float(cell.replace(",", "")) for cell in row[1:]]
    assert all(number[i] > 0 for i in (3, 4, 5, 7, 8))
    # One round: each printed ratio is that round's quotient of the printed speeds. Identical code
    # on a busy machine can still differ several-fold in 0.5 s, so the speeds themselves are not bounded.
    for ratio, (above, below) in {6: (5, 4), 9: (8, 7), 10: (4, 7), 11: (5, 8)}.items():
        assert number[ratio] == pytest.approx(number[above] / number[below], rel=0.01, abs=0.006), (ratio, row)
    for share, speed in {12: 4, 13: 5}.items():
        assert number[share] == pytest.approx(number[speed] / number[3], rel=0.01, abs=0.006), (share, row)
    assert "cifar-tiny: both serve the same ONNX " in done.stdout  # file, or graph where models/ is older
    assert "base: preparing" in done.stdout and "base: install" in done.stdout
