"""The page's sample images as the repository's builder writes them: the first test image of each
class of the split a served model was trained on, rewritten only when that split changes, and a
data set that cannot load here reported, not fatal."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from exporter.repository import SAMPLES
from training.digits import load_digits_split
from training.fashion import DIR_ENV
from training.samples import write_samples


def trained_model(repo: Path, name: str, data: dict, resize=(16, 16)) -> None:
    """A model directory as the page reads it: config.json's resize, the newest version's data."""
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "1" / "model.onnx").write_bytes(b"")
    (repo / name / "1" / "metadata.json").write_text(json.dumps({"data": data}))
    (repo / name / "config.json").write_text(json.dumps({"preprocessing": {"resize": list(resize)}}))


def test_the_digits_set_is_the_first_test_image_of_each_class_and_written_once(tmp_path):
    trained_model(tmp_path, "lenet", {"name": "digits", "seed": 3, "test_fraction": 0.25})
    trained_model(tmp_path, "random", {})  # not trained on a data set: no samples
    logged = []
    assert write_samples(tmp_path, logged.append) == ["digits"]
    split = load_digits_split(size=(16, 16), seed=3, test_fraction=0.25)
    first = [int(np.flatnonzero(split.test_labels == c)[0]) for c in range(10)]
    with np.load(tmp_path / SAMPLES / "digits.npz") as f:
        np.testing.assert_array_equal(f["images"], split.test_images[first])
        assert f["labels"].tolist() == list(range(10)) and f["names"].tolist() == split.labels
    stamp = (tmp_path / SAMPLES / "digits.npz").stat().st_mtime_ns
    assert write_samples(tmp_path, logged.append) == []
    assert (tmp_path / SAMPLES / "digits.npz").stat().st_mtime_ns == stamp

    (tmp_path / "lenet" / "1" / "metadata.json").write_text(json.dumps({"data": {"name": "digits", "seed": 4}}))
    assert write_samples(tmp_path, logged.append) == ["digits"]  # another split: drawn again


def test_a_data_set_that_cannot_load_is_reported_and_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv(DIR_ENV, str(tmp_path / "no-idx-files"))
    trained_model(tmp_path, "fashion", {"name": "fashion-mnist", "seed": 0, "test_fraction": 0.2}, resize=(28, 28))
    logged = []
    assert write_samples(tmp_path, logged.append) == []
    assert len(logged) == 1 and logged[0].startswith("samples of fashion-mnist: not written (")
    assert not (tmp_path / SAMPLES / "fashion-mnist.npz").exists()
