"""The ``fashion`` default is built from a checked weights file: the served repository holds exactly
those (float16-rounded) weights with the sidecar's labels and preprocessing, and an altered file
is refused with its name."""
import json

import numpy as np
import pytest

from exporter.architectures import FASHION_LABELS, resolve
from training.defaults import FASHION_SHA256, FASHION_WEIGHTS, fashion_from_weights
from exporter.repository import load_reference, reference_forward
from training.weights import WeightsError, save_weights, sha256


INFO = {"architecture": "fashion-cnn", "labels": FASHION_LABELS, "test_accuracy": 0.5, "best_epoch": 1,
        "preprocessing": {"color": "gray", "resize": [28, 28], "scale": 1 / 255, "mean": [0.286], "std": [0.353]},
        "training": {"seed": 4}, "history": []}


@pytest.fixture
def weights(tmp_path):
    params = resolve("fashion-cnn").network.init_params(seed=4)
    digest = save_weights(tmp_path / "fashion.npz", params, INFO)
    return tmp_path / "fashion.npz", digest, params


def test_the_model_is_built_from_the_file(tmp_path, weights):
    path, digest, params = weights
    version = fashion_from_weights(tmp_path / "repo", path, digest)
    network, served, config = load_reference(version.parent)
    assert config["name"] == "fashion" and config["labels"] == FASHION_LABELS
    assert config["preprocessing"]["resize"] == [28, 28] and config["preprocessing"]["color"] == "gray"
    for k, v in params.items():
        np.testing.assert_array_equal(served[k], v.astype(np.float16).astype(np.float32))
    meta = json.loads((version / "metadata.json").read_text())
    assert meta["weights_sha256"] == digest and meta["test_accuracy"] == 0.5
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    assert reference_forward(version.parent, x).shape == (2, 10)


def test_an_altered_file_is_refused(tmp_path, weights):
    path, digest, _ = weights
    with pytest.raises(WeightsError, match=r"fashion.npz: SHA-256 .* does not match the expected 11"):
        fashion_from_weights(tmp_path / "repo", path, "11" * 32)


def test_the_shipped_file_matches_the_pinned_digest():
    assert FASHION_WEIGHTS.is_file(), f"{FASHION_WEIGHTS} is missing"
    assert sha256(FASHION_WEIGHTS) == FASHION_SHA256
    assert FASHION_WEIGHTS.stat().st_size < 1_000_000


def test_a_version_built_from_other_weights_is_built_again(tmp_path, weights):
    """An updated checkout ships new weights: ``defaults`` replaces what older ones built, and
    leaves a version built from the shipped file alone."""
    from training.defaults import DefaultModel, ensure_defaults

    path, digest, params = weights
    older = tmp_path / "older.npz"
    older_digest = save_weights(older, {k: v + 1 for k, v in params.items()}, INFO)
    repo = tmp_path / "repo"
    fashion_from_weights(repo, older, older_digest)
    model = DefaultModel("fashion", lambda r: fashion_from_weights(r, path, digest), weights_sha256=digest)
    assert f"built from weights {older_digest[:12]}" in model.stale(repo)
    said = []
    assert ensure_defaults(repo, [model], log=said.append) == ["fashion"] and "again" in said[0]
    _, served, _ = load_reference(repo / "fashion")
    for k, v in params.items():
        np.testing.assert_array_equal(served[k], v.astype(np.float16).astype(np.float32))
    assert model.stale(repo) is None and ensure_defaults(repo, [model], log=said.append) == []
