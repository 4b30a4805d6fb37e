"""``python -m training`` (train, defaults) end to end, and its one-line errors."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def training(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "training", *args], cwd=ROOT, capture_output=True, text=True, timeout=540)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.mark.slow
def test_train_writes_the_model_and_prints_epochs_and_confusion_matrix(tmp_path):
    out = training("train", "lenet5", "--data", "digits", "--epochs", "2", "--out", str(tmp_path), "--seed", "1",
                   "--optimizer", "sgd", "--batch-size", "64").stdout
    lines = out.splitlines()
    assert lines[0].startswith("epoch 1/2  loss ") and lines[1].startswith("epoch 2/2  loss ")
    assert "true\\pred    0   1   2   3   4   5   6   7   8   9" in out
    meta = json.loads((tmp_path / "digits-lenet5" / "1" / "metadata.json").read_text())
    assert f"wrote {tmp_path / 'digits-lenet5' / '1'} (test accuracy {meta['test_accuracy']:.2%}" in out
    assert meta["seed"] == 1
    assert meta["training"]["optimizer"] == "sgd" and meta["training"]["lr"] == 0.05 and meta["training"]["batch_size"] == 64


@pytest.mark.parametrize("args, message", [
    (["cifar-tiny"], "--data digits: gray (1-channel) images, but 'digits-cifar-tiny' takes input (C, H, W) = (3, 32, 32)"),
    (["INPUT[16x16x1] -> FC-10"], "--name is required when training a spec"),
    (["lenet5", "--epochs", "0"], "--epochs must be positive, got 0"),
    (["lenet5", "--lr", "-0.1"], "--lr must be positive, got -0.1"),
    (["lenet5", "--data", "mnist"], "argument --data: invalid choice: 'mnist'"),
])
def test_errors_are_one_line(tmp_path, args, message):
    result = training("train", *args, "--out", str(tmp_path), check=False)
    assert result.returncode != 0
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.slow
def test_defaults_builds_what_is_missing_once(tmp_path):
    repo = tmp_path / "repo"
    first = training("defaults", "--out", str(repo)).stdout
    assert "cifar-tiny: built" in first and "cifar-vgg: built" in first
    stamp = (repo / "cifar-vgg" / "1" / "model.onnx").stat().st_mtime_ns
    again = training("defaults", "--out", str(repo)).stdout
    assert "cifar-tiny: version 1 present" in again and "cifar-vgg: version 1 present" in again
    assert (repo / "cifar-vgg" / "1" / "model.onnx").stat().st_mtime_ns == stamp
    assert json.loads((repo / "cifar-vgg" / "1" / "metadata.json").read_text())["seed"] == 0
