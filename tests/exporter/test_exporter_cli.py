"""``python -m exporter`` as a user runs it (subprocesses): output, files, and one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from exporter.architectures import ARCHITECTURES


def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True, text=True, timeout=540)
    assert (proc.returncode == 0) == ok, proc.stderr
    if not ok:
        assert proc.stderr.count("\n") == 1, f"expected one error line, got {proc.stderr!r}"
    return proc


def test_list_shows_every_architecture_with_shape_and_params():
    out = run("list").stdout
    for name in ARCHITECTURES:
        assert name in out
    assert "227x227x3" in out and "60,965,224" in out and "138,357,544" in out and "31,642" in out


def test_summary_json_and_table():
    data = json.loads(run("summary", "vgg16", "--json").stdout)
    assert data["params"] == 138_357_544 and data["activations"] == 15_237_608
    assert data["macs"] == sum(layer["macs"] for layer in data["layers"])
    table = run("summary", "INPUT[32x32x3] -> CONV3-8 -> RELU -> POOL2 -> FC-10").stdout
    assert "32x32x8" in table and f"{3 * 9 * 8 + 8 + 16 * 16 * 8 * 10 + 10:,}" in table


def test_build_and_reference(tmp_path):
    repo = tmp_path / "repo"
    out = run("build", "lenet5", "--out", str(repo), "--name", "digits", "--seed", "3", "--version", "4").stdout
    assert "digits/4" in out and (repo / "digits" / "4" / "model.onnx").is_file()
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    run("reference", str(repo / "digits"), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "s.npy"))
    net = ARCHITECTURES["lenet5"].build("digits")
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), net.predict(x, net.init_params(3)), rtol=1e-6)

    run("build", "INPUT[8x8x1] -> CONV3-2/P0 -> FC-3", "--out", str(repo), "--name", "tiny", "--fully-convolutional")
    assert json.loads((repo / "tiny" / "config.json").read_text())["output"]["shape"] == [3, -1, -1]


@pytest.mark.parametrize("args, message", [
    (["build", "vgg19", "--out", "unused"], "unknown architecture 'vgg19'; known: cifar-tiny, cifar-vgg, lenet5, alexnet"),
    (["summary", "INPUT[32x32x3] -> CONV3-16/S2/P0"], "layer 'CONV3-16/S2/P0' at character 19 does not fit"),
    (["build", "INPUT[8x8x1] -> FC-3", "--out", "unused"], "--name is required when building from a spec"),
    (["build", "lenet5", "--out", "unused", "--name", "../up"], "model name must match"),
    (["build"], "the following arguments are required"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_errors_are_one_line(args, message, tmp_path):
    proc = run(*[str(tmp_path / a) if a == "unused" else a for a in args], ok=False)
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_reference_errors_name_expected_and_received(tmp_path):
    repo = tmp_path / "repo"
    run("build", "cifar-tiny", "--out", str(repo))
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 28, 28), np.float32))
    proc = run("reference", str(repo / "cifar-tiny"), "--input", str(tmp_path / "bad.npy"), "--output", str(tmp_path / "s.npy"), ok=False)
    assert "expected shape (N, 3, 32, 32), received (2, 3, 28, 28)" in proc.stderr
    proc = run("reference", str(repo / "cifar-tiny"), "--input", str(tmp_path / "missing.npy"), "--output", str(tmp_path / "s.npy"), ok=False)
    assert "missing.npy" in proc.stderr
    proc = run("reference", str(repo / "cifar-tiny"), "--input", str(tmp_path / "bad.npy"), "--output", "x", "--version", "0", ok=False)
    assert "version must be a positive integer, got '0'" in proc.stderr
