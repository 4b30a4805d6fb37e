"""The model repository: layout and config schema (DESIGN.md), round trip of the reference forward
pass, versions, and names that cannot escape the repository."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from exporter.build import build
from exporter.repository import (
    RepositoryError, check_model_name, check_version, list_versions, load_reference, model_dir, reference_forward,
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    build("cifar-tiny", root, seed=0, version=1)
    build("cifar-tiny", root, seed=1)  # version 2, the next free one
    return root


def test_layout_and_config_schema(repo):
    mdir = repo / "cifar-tiny"
    assert sorted(p.name for p in mdir.iterdir()) == ["1", "2", "config.json"]
    assert sorted(p.name for p in (mdir / "1").iterdir()) == ["graph.json", "metadata.json", "model.onnx", "weights.npz"]
    config = json.loads((mdir / "config.json").read_text())
    assert config["name"] == "cifar-tiny" and config["architecture"] == "cifar-tiny"
    assert config["spec"] == "INPUT[32x32x3] -> CONV5-12/P2 -> RELU -> POOL2 -> FC-10"
    assert config["input"] == {"name": "input", "datatype": "FP32", "shape": [3, 32, 32], "layout": "NCHW"}
    assert config["output"] == {"name": "scores", "datatype": "FP32", "shape": [10]}
    assert config["labels"][:2] == ["airplane", "automobile"] and len(config["labels"]) == 10
    assert config["preprocessing"] == {"color": "rgb", "resize": [32, 32], "scale": 1 / 255,
                                       "mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616], "invert": "never"}
    assert config["batching"] == {"max_batch_size": 64, "max_queue_delay_ms": 0.0, "preferred_batch_sizes": [],
                                  "max_queue_size": 1024, "instances": 1}
    assert config["fully_convolutional"] is False
    meta = json.loads((mdir / "2" / "metadata.json").read_text())
    assert meta["version"] == 2 and meta["seed"] == 1 and meta["params"] == 31_642 and meta["exporter_version"]
    props = {p.key: p.value for p in onnx.load(mdir / "1" / "model.onnx").metadata_props}
    assert json.loads(props["labels"]) == config["labels"] and json.loads(props["preprocessing"]) == config["preprocessing"]
    assert props["spec"] == config["spec"] and props["seed"] == "0" and json.loads(props["input_shape"]) == [3, 32, 32]


def test_reference_forward_equals_onnxruntime_and_newest_is_default(repo, run_onnx):
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    mdir = repo / "cifar-tiny"
    assert list_versions(mdir) == [1, 2]
    for version in (1, 2):
        onnx_scores = run_onnx((mdir / str(version) / "model.onnx").read_bytes(), x)
        ref = reference_forward(mdir, x, version=version)
        assert np.abs(ref - onnx_scores).max() <= 2e-5 * np.abs(ref).max()
    assert np.array_equal(reference_forward(mdir, x), reference_forward(mdir, x, version="2"))
    assert not np.allclose(reference_forward(mdir, x, version=1), reference_forward(mdir, x, version=2))
    network, params, config = load_reference(mdir, 1)
    assert network.name == "cifar-tiny" and set(params) == set(network.param_shapes()) and config["name"] == "cifar-tiny"
    fresh = network.init_params(0)
    assert all(np.array_equal(params[k], fresh[k]) for k in fresh)  # the saved weights are seed 0's


def test_wrong_input_and_missing_versions_are_named(repo):
    mdir = repo / "cifar-tiny"
    with pytest.raises(RepositoryError, match=r"expected shape \(N, 3, 32, 32\), received \(2, 3, 28, 28\)"):
        reference_forward(mdir, np.zeros((2, 3, 28, 28), np.float32))
    with pytest.raises(RepositoryError, match=r"no version 7; available: \[1, 2\]"):
        reference_forward(mdir, np.zeros((1, 3, 32, 32), np.float32), version=7)
    with pytest.raises(RepositoryError, match="config.json not found"):
        load_reference(repo / "nothing-here")
    with pytest.raises(RepositoryError, match="already exists"):
        build("cifar-tiny", repo, version=1)
    with pytest.raises(RepositoryError, match="input is .* but this version has"):
        build("lenet5", repo, name="cifar-tiny")


@pytest.mark.parametrize("name", ["", ".", "..", "../evil", "a/b", "a\\b", ".hidden", "-x", "x" * 129, None, 3])
def test_bad_model_names_are_refused(name, tmp_path):
    with pytest.raises(RepositoryError, match="model name must match"):
        check_model_name(name)
    with pytest.raises(RepositoryError):
        model_dir(tmp_path, name)


@pytest.mark.parametrize("version", [0, -1, True, 1.0, "01", "1/..", "../1", "", None])
def test_bad_versions_are_refused(version):
    with pytest.raises(RepositoryError, match="version must be a positive integer"):
        check_version(version)


def test_good_names_and_versions():
    assert check_model_name("digits-lenet5_v2.1") == "digits-lenet5_v2.1"
    assert check_version(3) == check_version("3") == check_version(np.int64(3)) == 3


def test_fully_convolutional_model_config_and_scores_map(tmp_path, run_onnx):
    path = build("lenet5", tmp_path, name="lenet5-fcn", fully_convolutional=True)
    config = json.loads((path.parent / "config.json").read_text())
    assert config["input"]["shape"] == [1, -1, -1] and config["output"]["shape"] == [10, -1, -1]
    assert config["fully_convolutional"] is True
    x = np.random.default_rng(0).standard_normal((2, 1, 36, 40)).astype(np.float32)
    ref = reference_forward(path.parent, x)
    assert ref.shape == (2, 10, 2, 3)
    assert np.abs(ref - run_onnx((path / "model.onnx").read_bytes(), x)).max() <= 2e-5 * np.abs(ref).max()
    with pytest.raises(RepositoryError, match=r"expected shape \(N, 1, \?, \?\), received \(2, 3, 36, 40\)"):
        reference_forward(path.parent, np.zeros((2, 3, 36, 40), np.float32))
