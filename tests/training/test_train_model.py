"""Training into the model repository: the written model is the trained one, in NumPy and in ONNX."""
import json

import numpy as np
import pytest

from training.digits import load_digits_split
from exporter.repository import load_reference, reference_forward
from training.train import TrainConfig
from training.model import train_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    lines = []
    path, result = train_model("lenet5", repo, config=TrainConfig(epochs=2, seed=0), progress=False, log=lines.append)
    return repo, path, result, lines


def test_the_repository_holds_the_trained_weights_and_their_accuracy(trained, run_onnx):
    repo, path, result, _ = trained
    assert path == repo / "digits-lenet5" / "1"
    split = load_digits_split(seed=0)
    meta = json.loads((path / "metadata.json").read_text())
    config = json.loads((path.parent / "config.json").read_text())
    assert config["labels"] == [str(d) for d in range(10)]
    assert config["preprocessing"] == {**split.preprocessing, "invert": "never"}
    assert meta["data"] == {"name": "digits", "seed": 0, "test_fraction": 0.2, "train": 1317, "val": 120, "test": 360}
    assert meta["training"]["epochs"] == 2 and meta["seed"] == 0

    network, params, _ = load_reference(path.parent)
    for k, v in result.params.items():
        np.testing.assert_array_equal(params[k], v)
    numpy_pred = reference_forward(path.parent, split.x_test).argmax(axis=1)
    assert meta["test_accuracy"] == pytest.approx(float((numpy_pred == split.test_labels).mean()), abs=1e-6)
    assert meta["test_accuracy"] > 0.8
    onnx_scores = run_onnx((path / "model.onnx").read_bytes(), split.x_test)
    np.testing.assert_array_equal(onnx_scores.argmax(axis=1), numpy_pred)


def test_the_log_has_every_epoch_and_the_confusion_matrix(trained):
    _, path, result, lines = trained
    assert [line.split()[1] for line in lines[:2]] == ["1/2", "2/2"]
    table = next(line for line in lines if line.startswith("true\\pred")).splitlines()
    rows = [list(map(int, line.split()[1:])) for line in table[1:]]
    assert len(rows) == 10
    assert np.trace(rows) == round(result.test_accuracy * 360)
    assert np.sum(rows) == 360
    assert lines[-1].startswith(f"wrote {path}")


def test_inputs_that_do_not_fit_the_digits_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"--data digits: gray.*expected C = 1"):
        train_model("cifar-tiny", tmp_path, config=TrainConfig(epochs=1), progress=False, log=lambda _: None)
    with pytest.raises(ValueError, match=r"--data digits: 10 classes.*3 class scores"):
        train_model("INPUT[16x16x1] -> FC-3", tmp_path, name="three", config=TrainConfig(epochs=1), progress=False)
    with pytest.raises(ValueError, match="--name is required"):
        train_model("INPUT[16x16x1] -> FC-10", tmp_path, config=TrainConfig(epochs=1), progress=False)
