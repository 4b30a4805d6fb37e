"""What the page is told about a model's training, read defensively from the repository files."""
from __future__ import annotations

import json

import numpy as np
import pytest

from service.http.console import _read_samples, newest_metadata, sample_sets, trained


@pytest.mark.parametrize("config, metadata, expected", [
    ({"trained": False}, {"training": {"epochs": 3}}, False),   # config.json's flag wins
    ({"trained": True}, {}, True),
    ({"trained": "no"}, {"training": {"epochs": 3}}, True),      # not a boolean: ignored
    ({}, {"training": {"epochs": 3}}, True),                     # a recorded training run
    ({}, {"params": 10}, False),                                 # built, never trained
    ({}, None, None),                                            # nothing recorded: unknown
])
def test_trained_reads_the_flag_then_the_metadata(tmp_path, config, metadata, expected):
    model = tmp_path / "m"
    (model / "1").mkdir(parents=True)
    (model / "2").mkdir()
    (model / "config.json").write_text(json.dumps(config))
    if metadata is not None:
        (model / "2" / "metadata.json").write_text(json.dumps(metadata))
        (model / "1" / "metadata.json").write_text(json.dumps({"training": {"old": True}}))
    assert trained(model) is expected


def test_unreadable_files_are_unknown_not_errors(tmp_path):
    model = tmp_path / "m"
    (model / "3").mkdir(parents=True)
    (model / "config.json").write_text("{not json")
    (model / "3" / "metadata.json").write_text("[1, 2]")
    assert trained(model) is None and newest_metadata(model) == {}
    assert trained(tmp_path / "absent") is None


def test_sample_sets_are_the_npz_files_the_builder_wrote(tmp_path):
    assert sample_sets(tmp_path / "missing") == {}
    images = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    np.savez(tmp_path / "digits.npz", images=images, labels=np.array([0, 1]), names=np.array(["zero", "one"]))
    (tmp_path / ".digits.tmp-1.npz").write_bytes(b"half written")
    (tmp_path / "notes.txt").write_text("not a set")
    assert sample_sets(tmp_path) == {"digits": tmp_path / "digits.npz"}
    got, labels, names = _read_samples(tmp_path / "digits.npz", 0)
    np.testing.assert_array_equal(got, images)
    assert labels.tolist() == [0, 1] and names == ["zero", "one"]
