"""What a client is told about a model's weights (config.json ``trained`` through GetModelInfo and
KServe ModelMetadata, the classify CLI's default and warning) and the ``invert`` preprocessing
for pictures on a white background."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from tiny_models import tiny_config

from exporter.repository import RepositoryError
from service.client import DEFAULT_MODEL, pick_model, untrained_warning
from service.generated.convnet.v1 import convnet_pb2 as pb
from service.inputs import decode_image, light_border
from service.repository import spec_from_config


def gray_spec(invert: str | None):
    config = tiny_config("m", input={"name": "input", "datatype": "FP32", "shape": [1, 4, 4], "layout": "NCHW"})
    config["preprocessing"] = {"color": "gray", "resize": [4, 4], "scale": 1 / 255, "mean": [0.0], "std": [1.0]}
    if invert is not None:
        config["preprocessing"]["invert"] = invert
    return spec_from_config(config, "m")


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


DARK = np.array([[0, 0, 0, 0], [0, 200, 250, 0], [0, 180, 255, 0], [0, 0, 0, 0]], dtype=np.uint8)  # light on black


@pytest.mark.parametrize("invert, pixels, flipped", [
    (None, DARK, False), ("never", 255 - DARK, False), ("always", DARK, True),
    ("auto", DARK, False), ("auto", 255 - DARK, True),
])
def test_invert_never_always_or_when_the_border_is_light(invert, pixels, flipped):
    spec = gray_spec(invert)
    assert spec.preprocessing.invert == (invert or "never")
    x = decode_image(png(pixels), spec.preprocessing, "images[0]", 10_000)
    expected = (255 - pixels if flipped else pixels).astype(np.float32) / 255
    np.testing.assert_allclose(x[0], expected, rtol=1e-6)


def test_auto_turns_a_white_background_picture_into_the_dark_background_tensor():
    spec = gray_spec("auto")
    a = decode_image(png(DARK), spec.preprocessing, "f", 10_000)
    b = decode_image(png(255 - DARK), spec.preprocessing, "f", 10_000)
    np.testing.assert_array_equal(a, b)
    assert light_border(Image.fromarray(255 - DARK)) and not light_border(Image.fromarray(DARK))


def test_an_unknown_invert_value_names_the_field():
    config = tiny_config("m")
    config["preprocessing"]["invert"] = "sometimes"
    with pytest.raises(RepositoryError, match=r"preprocessing.invert.*'never' or 'always' or 'auto'.*'sometimes'"):
        spec_from_config(config, "m")


@pytest.mark.parametrize("value", [True, False, None])
def test_trained_is_read_from_the_config(value):
    config = tiny_config("m")
    if value is not None:
        config["trained"] = value
    assert spec_from_config(config, "m").trained is value
    with pytest.raises(RepositoryError, match=r"trained"):
        spec_from_config({**config, "trained": "yes"}, "m")


class FakeStub:
    def __init__(self, models):
        self.models = models

    def ListModels(self, request, timeout):
        return pb.ListModelsResponse(models=self.models)


def info(name, trained=None, ready=True):
    m = pb.ModelInfo(name=name, ready=ready)
    if trained is not None:
        m.trained = trained
    return m


def test_classify_defaults_to_fashion_then_to_a_trained_model():
    models = [info("cifar-tiny", False), info("digits-lenet5", True), info(DEFAULT_MODEL, True)]
    assert pick_model(FakeStub(models), None, 1).name == "fashion"
    assert pick_model(FakeStub(models[:2]), None, 1).name == "digits-lenet5"
    assert pick_model(FakeStub([info("a", False), info("b", None)]), None, 1).name == "b"


def test_classify_warns_in_one_line_for_random_weights_only():
    warning = untrained_warning(info("cifar-vgg", False))
    assert warning.startswith("classify: warning: model 'cifar-vgg' has random (untrained) weights") and "\n" not in warning
    assert untrained_warning(info("fashion", True)) is None and untrained_warning(info("old", None)) is None
