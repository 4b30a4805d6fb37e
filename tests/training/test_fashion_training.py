"""Training the fashion net: the command on a 2,000-image subset learns far beyond chance and writes a
checked float16 weights file; the same seed gives the same weights, with batch norm and flips."""
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from exporter.architectures import resolve
from training.fashion import load_fashion_split
from training.train import TrainConfig, train
from training.weights import WeightsError, load_weights, save_weights, sha256

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fashion")
    result = subprocess.run(
        [sys.executable, "-m", "training", "train", "fashion-cnn", "--data", "fashion-mnist", "--epochs", "1",
         "--train-subset", "2000", "--batch-size", "64", "--augment-flip", "--out", str(out / "repo"),
         "--name", "fashion", "--weights-out", str(out / "fashion.npz")],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return out, result.stdout


@pytest.mark.slow  # the training command on 2,000 images: about 30 s
def test_one_epoch_on_2000_images_beats_chance_widely(short_run):
    out, stdout = short_run
    meta = json.loads((out / "repo" / "fashion" / "1" / "metadata.json").read_text())
    assert meta["data"]["train"] == 2000 and meta["data"]["val"] == 5000 and meta["data"]["test"] == 10000
    assert meta["best_epoch"] == 1 and len(meta["history"]) == 1
    assert meta["test_accuracy"] > 0.45, meta  # chance is 0.10
    assert "epoch 1/1  loss " in stdout and "T-shirt/top" in stdout


@pytest.mark.slow  # the training command on 2,000 images: about 30 s
def test_the_weights_file_is_checked_and_is_what_the_repository_serves(short_run):
    out, stdout = short_run
    path = out / "fashion.npz"
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["sha256"] == sha256(path) and f"sha256 {sidecar['sha256']}" in stdout
    assert sidecar["architecture"] == "fashion-cnn" and sidecar["labels"][0] == "T-shirt/top"
    params, _ = load_weights(path, sidecar["sha256"])
    with np.load(out / "repo" / "fashion" / "1" / "weights.npz") as served:
        assert sorted(served.files) == sorted(params)
        for k in params:
            np.testing.assert_array_equal(served[k], params[k])  # the float16-rounded values, exactly
    with pytest.raises(WeightsError, match=r"fashion.npz: SHA-256 [0-9a-f]{64} does not match the expected 00"):
        load_weights(path, "00" * 32)


def test_weights_round_trip_and_a_changed_file_is_refused(tmp_path):
    params = {"a.W": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), "a.b": np.ones(4, np.float32)}
    digest = save_weights(tmp_path / "w.npz", params, {"architecture": "x"})
    assert save_weights(tmp_path / "again.npz", params, {"architecture": "x"}) == digest  # byte-reproducible
    loaded, info = load_weights(tmp_path / "w.npz", digest)
    assert info["architecture"] == "x" and loaded["a.W"].dtype == np.float32
    np.testing.assert_array_equal(loaded["a.W"], params["a.W"].astype(np.float16))
    (tmp_path / "w.npz").write_bytes((tmp_path / "w.npz").read_bytes() + b"x")
    with pytest.raises(WeightsError, match=r"w.npz: SHA-256 .* does not match"):
        load_weights(tmp_path / "w.npz", digest)
    with pytest.raises(WeightsError, match=r"missing.npz: file not found"):
        load_weights(tmp_path / "missing.npz")


@pytest.mark.slow
def test_the_same_seed_gives_the_same_weights_with_batch_norm_and_flips():
    split = load_fashion_split().subset(train=256, test=64).with_validation(0.25, 0)
    net = resolve("fashion-cnn").network
    config = TrainConfig(epochs=1, batch_size=64, warmup_epochs=0, augment_shift=2, augment_flip=True, seed=3)
    a = train(net, net.init_params(seed=1), split, config, progress=False)
    b = train(net, net.init_params(seed=1), split, config, progress=False)
    c = train(net, net.init_params(seed=1), split, dataclasses.replace(config, seed=4), progress=False)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert not np.array_equal(a.params["fc2.W"], c.params["fc2.W"])
    assert not np.array_equal(a.params["batchnorm1.mean"], net.init_params(seed=1)["batchnorm1.mean"])  # running stats moved
