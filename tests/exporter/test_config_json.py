"""config.json declared once (exporter.config_schema): the writer refuses what the
checker would, the checker names the field, and what the exporter writes the server accepts."""
from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest

from exporter.config_schema import (
    CONFIG_FIELDS, DEFAULT_BATCHING, RepositoryError, check_config, config_get, config_value, model_config,
)
from service.repository import spec_from_config

NETWORK = SimpleNamespace(name="net", input_shape=(1, 8, 8), num_classes=2)
GRAY = {"color": "gray", "resize": [8, 8], "scale": 1 / 255, "mean": [0.5], "std": [0.25]}


def written(**changes) -> dict:
    args = {"architecture": "tiny", "spec": None, "labels": ["no", "yes"], "preprocessing": GRAY} | changes
    return model_config(NETWORK, **args)


def test_what_the_writer_writes_is_every_declared_field_and_the_server_reads_it():
    config = written()
    for field in CONFIG_FIELDS:
        config_value(config, field.path)  # present, none left to a default
    assert config["batching"] == DEFAULT_BATCHING
    spec = spec_from_config(config, "net")
    assert spec.input_shape == (1, 8, 8) and spec.labels == ("no", "yes") and spec.preprocessing.mean == (0.5,)


@pytest.mark.parametrize("preprocessing, message", [
    ({**GRAY, "mean": [0.5, 0.5, 0.5]}, r"config.json: preprocessing.mean: expected a list of 1 numbers, got \[0.5, 0.5, 0.5\]"),
    ({**GRAY, "std": [0.0]}, r"config.json: preprocessing.std: expected positive numbers, got \[0.0\]"),
    ({**GRAY, "color": "rgb"}, r"config.json: input.shape\[0\]: expected 3 channels for color 'rgb', got 1"),
    ({**GRAY, "scale": 0}, r"config.json: preprocessing.scale: expected a positive number, got 0"),
])
def test_the_writer_refuses_a_config_the_checker_would_refuse(preprocessing, message):
    with pytest.raises(RepositoryError, match=message):
        written(preprocessing=preprocessing)


def test_the_checker_names_a_missing_field_and_fills_optional_ones_from_their_defaults():
    config = written()
    broken = copy.deepcopy(config)
    del broken["output"]["datatype"]
    with pytest.raises(RepositoryError, match=r"config.json: missing field 'output.datatype'"):
        check_config(broken)
    lean = copy.deepcopy(config)
    for key in ("name", "architecture", "spec", "batching", "fully_convolutional"):
        del lean[key]
    del lean["input"]["layout"]
    assert check_config(lean) is lean
    assert (config_get(lean, "input.layout"), config_get(lean, "batching"), config_get(lean, "fully_convolutional")) \
        == ("NCHW", {}, False)
    with pytest.raises(RepositoryError, match="expected a JSON object, got list"):
        check_config([])
