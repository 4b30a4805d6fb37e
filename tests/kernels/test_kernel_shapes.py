"""Shape rules and parameter counts against the cs231n notes' numbers, the errors for bad input, and
every layer kind's JSON round trip (graph.json)."""
import json

import numpy as np
import pytest

from kernels import (LAYER_TYPES, LRN, Add, AvgPool2d, BatchNorm, ChannelShuffle, ChannelSlice, Clip, Concat, Conv2d,
                     Dropout, Flatten, GlobalAvgPool, GlobalMaxPool, HardSigmoid, HardSwish, LeakyReLU, Linear, MaxPool2d,
                     Mul, ReLU, ShapeError, Sigmoid, SiLU, Softmax, layer_from_dict)


def n_params(layer, in_shape):
    return sum(int(np.prod(s)) for s in layer.param_shapes(in_shape).values())


def test_alexnet_conv1_volume():
    conv1 = Conv2d(96, 11, stride=4)
    assert conv1.output_shape((3, 227, 227)) == (96, 55, 55)
    assert int(np.prod(conv1.output_shape((3, 227, 227)))) == 290_400
    assert conv1.param_shapes((3, 227, 227))["W"] == (96, 3, 11, 11)
    assert n_params(conv1, (3, 227, 227)) == 34_944


def test_alexnet_conv1_forward_volume():
    conv1 = Conv2d(96, 11, stride=4)
    x = np.zeros((1, 3, 227, 227), dtype=np.float32)
    params = {name: np.zeros(s, dtype=np.float32) for name, s in conv1.param_shapes((3, 227, 227)).items()}
    assert conv1.forward(x, params)[0].shape == (1, 96, 55, 55)


def test_filter_parameter_counts():
    assert n_params(Conv2d(1, 5), (3, 32, 32)) == 75 + 1
    assert Conv2d(1, 3).param_shapes((20, 16, 16))["W"] == (1, 20, 3, 3)
    assert int(np.prod(Conv2d(1, 3).param_shapes((20, 16, 16))["W"])) == 180
    assert n_params(Conv2d(12, 5, pad=2), (3, 32, 32)) == 912
    assert n_params(Linear(10), (3072,)) == 30_730


def test_padding_that_keeps_the_size():
    for f in (1, 3, 5, 7):
        assert Conv2d(8, f, pad=(f - 1) // 2).output_shape((3, 32, 32)) == (8, 32, 32)


def test_non_integer_output_raises_naming_layer_and_volume():
    layer = Conv2d(4, 3, stride=2)
    with pytest.raises(ValueError) as err:
        layer.output_shape((3, 10, 10))
    message = str(err.value)
    assert isinstance(err.value, ShapeError)
    assert "Conv2d(" in message and "size=3" in message and "stride=2" in message
    assert "(3, 10, 10)" in message and "4.5" in message


def test_forward_with_wrong_input_shape_raises_shape_error():
    layer = Conv2d(4, 3, stride=2)
    params = {"W": np.zeros((4, 3, 3, 3)), "b": np.zeros(4)}
    with pytest.raises(ShapeError, match=r"Conv2d\(.*\(3, 10, 10\)"):
        layer.forward(np.zeros((1, 3, 10, 10)), params)
    with pytest.raises(ShapeError, match=r"\(3, 11\)"):
        layer.forward(np.zeros((1, 3, 11)), params)
    with pytest.raises(ShapeError, match="MaxPool2d"):
        MaxPool2d(2).forward(np.zeros((1, 3, 5, 5)), {})
    with pytest.raises(ShapeError, match="Linear"):
        Linear(3).forward(np.zeros((2, 3, 4, 4)), {"W": np.zeros((48, 3)), "b": np.zeros(3)})


def test_filter_larger_than_padded_input_raises():
    with pytest.raises(ShapeError, match="larger than the padded"):
        Conv2d(4, 7, pad=1).output_shape((3, 4, 4))
    with pytest.raises(ShapeError, match="larger than the padded"):
        Conv2d(4, 3, dilation=3).output_shape((3, 6, 6))
    with pytest.raises(ShapeError, match="larger than the padded"):
        MaxPool2d(3).output_shape((3, 2, 2))


def test_channel_and_group_mismatches_raise():
    with pytest.raises(ShapeError, match="groups"):
        Conv2d(6, 3, groups=2).output_shape((3, 8, 8))
    with pytest.raises(ShapeError, match="groups"):
        Conv2d(5, 3, groups=2).output_shape((4, 8, 8))
    with pytest.raises(ShapeError, match="spatial sizes differ"):
        Concat().output_shape(((3, 4, 4), (2, 5, 5)))
    with pytest.raises(ShapeError, match="same shape"):
        Add().output_shape(((3, 4, 4), (2, 4, 4)))


@pytest.mark.parametrize("layer", [Conv2d(0, 3), Conv2d(4, 0), Conv2d(4, 3, stride=0), Conv2d(4, 3, dilation=0),
                                   Conv2d(4, 3, groups=0), Conv2d(4, 3, pad=-1), MaxPool2d(0), AvgPool2d(2, 0),
                                   LRN(size=0)])
def test_non_positive_sizes_raise(layer):
    with pytest.raises(ShapeError, match="must be"):
        layer.output_shape((4, 8, 8))


def test_non_positive_units_and_bad_dropout_raise():
    with pytest.raises(ShapeError, match="units"):
        Linear(0).output_shape((10,))
    with pytest.raises(ShapeError, match="p must be"):
        Dropout(p=1.0).output_shape((10,))


def test_wrong_parameter_shapes_raise_value_error_naming_the_parameter():
    x = np.zeros((1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"'W' must have shape \(4, 3, 3, 3\), got \(4, 3, 5, 5\)"):
        Conv2d(4, 3).forward(x, {"W": np.zeros((4, 3, 5, 5)), "b": np.zeros(4)})
    with pytest.raises(ValueError, match="missing parameter 'b'"):
        Conv2d(4, 3).forward(x, {"W": np.zeros((4, 3, 3, 3))})
    with pytest.raises(ValueError, match=r"'W' must have shape \(192, 10\)"):
        Linear(10).forward(np.zeros((1, 192)), {"W": np.zeros((10, 192)), "b": np.zeros(10)})
    with pytest.raises(ValueError, match="'var'"):
        BatchNorm().forward(x, {"gamma": np.ones(3), "beta": np.zeros(3), "mean": np.zeros(3), "var": np.ones(4)})


def test_pool_output_and_macs():
    assert MaxPool2d(2).output_shape((12, 32, 32)) == (12, 16, 16)
    assert MaxPool2d(3, 2).output_shape((96, 55, 55)) == (96, 27, 27)
    assert Conv2d(12, 5, pad=2).macs((3, 32, 32)) == 12 * 32 * 32 * 75
    assert Flatten().output_shape((12, 16, 16)) == (3072,)
    assert ReLU().output_shape((3, 4, 4)) == (3, 4, 4)


def test_conv_floor_rounding_drops_what_no_window_fits():
    assert Conv2d(64, 7, stride=2, pad=3, rounding="floor").output_shape((3, 224, 224)) == (64, 112, 112)  # resnet conv1
    assert Conv2d(64, 3, stride=2, rounding="floor").output_shape((3, 224, 224)) == (64, 111, 111)  # squeezenet1_1 conv1
    with pytest.raises(ShapeError, match="112.5 is not an integer"):
        Conv2d(64, 7, stride=2, pad=3).output_shape((3, 224, 224))
    with pytest.raises(ShapeError, match="'exact' or 'floor'"):
        Conv2d(4, 3, rounding="ceil").output_shape((3, 8, 8))


# One configured instance of every layer kind, with fields away from their defaults.
EVERY_KIND = [
    Conv2d(8, 3, stride=2, pad=(1, 0, 1, 2), dilation=2, groups=4, bias=False, rounding="floor"),
    MaxPool2d(3, 2, 1, rounding="ceil"), AvgPool2d(3, 2, (1, 1, 0, 0), rounding="floor", count_include_pad=True),
    GlobalAvgPool(keepdims=False), GlobalMaxPool(keepdims=False), ReLU(), Clip(0.0, 6.0), Clip(max=1.5), LeakyReLU(0.2),
    Sigmoid(), HardSigmoid(1 / 6, 0.5), HardSwish(), SiLU(), Dropout(0.2), LRN(3, 0.5, 0.6, 1.5), BatchNorm(1e-3),
    Linear(7, bias=False), Flatten(), Concat(), Add(), Mul(), ChannelShuffle(2), ChannelSlice(2, 5), Softmax(),
]


def test_every_layer_kind_round_trips_through_json():
    assert {layer.kind for layer in EVERY_KIND} == set(LAYER_TYPES)
    for layer in EVERY_KIND:
        again = layer_from_dict(json.loads(json.dumps(layer.to_dict())))
        assert again == layer and type(again) is type(layer)
