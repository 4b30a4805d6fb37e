"""FC -> CONV conversion (the notes' section): (a) the same scores on the original size for every
architecture; (b) on a larger image, a map whose every position is the original net's scores on
the corresponding crop when the trunk has no padding — in NumPy and in onnxruntime; padded trunks
give the map shape the notes predict."""
from __future__ import annotations

import numpy as np
import pytest

from exporter.architectures import ARCHITECTURES
from exporter.fully_convolutional import to_fully_convolutional
from exporter.onnx_export import export_onnx
from exporter.spec import network_from_spec
from exporter.graph import Network, Node
from kernels import Flatten, Linear, ShapeError, Softmax

# Float32 sums in another order (a convolution's im2col product instead of the FC matmul) differ
# by a few ulps per layer; 2e-5 of the score scale is 10x the observed difference (see test_exporter_onnx).
RELATIVE_TOLERANCE = 2e-5
ALEXNET_LIKE = ("INPUT[67x67x3] -> CONV11-16/S4/P0 -> RELU -> LRN -> POOL3/S2 -> CONV5-32/P2/G2 -> RELU -> POOL3/S2"
                " -> CONV3-24 -> RELU -> CONV3-24/G2 -> RELU -> [FC-64 -> RELU -> DROPOUT]*2 -> FC-10")


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return np.abs(a - b).max() <= RELATIVE_TOLERANCE * np.abs(b).max()


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "vgg16" else n
                                  for n in [*ARCHITECTURES, "alexnet-like"]])
def test_converted_net_gives_the_original_scores_on_the_original_size(name):
    net = network_from_spec(ALEXNET_LIKE, name) if name == "alexnet-like" else ARCHITECTURES[name].build(name)
    params = net.init_params(5)
    conv_net, conv_params = to_fully_convolutional(net, params)
    assert not any(n.layer.kind in ("fc", "flatten") for n in conv_net.nodes)
    assert conv_net.num_params() == net.num_params()
    x = np.random.default_rng(0).standard_normal((1, *net.input_shape)).astype(np.float32)
    expected = net.predict(x, params)
    got = conv_net.predict(x, conv_params)
    assert got.shape == (1, net.num_classes, 1, 1)
    assert _close(got[:, :, 0, 0], expected)


def _crop_scores(net, params, image, size, stride, out_hw):
    """The original net's scores on every crop of ``size``, ``stride`` pixels apart: (N, classes, H', W')."""
    h2, w2 = out_hw
    crops = [image[:, :, i * stride:i * stride + size[0], j * stride:j * stride + size[1]] for i in range(h2) for j in range(w2)]
    scores = np.stack([net.predict(np.ascontiguousarray(c), params) for c in crops], axis=-1)
    return scores.reshape(*scores.shape[:2], h2, w2)


@pytest.mark.parametrize("arch, big, stride", [
    ("lenet5", (40, 44), 4),  # 32x32 crops 4 pixels apart (two 2x2 pools): a 3x4 map
    ("INPUT[10x10x2] -> CONV3-4/P0 -> RELU -> POOL2 -> CONV2-6/P0 -> FC-6 -> RELU -> FC-3", (16, 14), 2),
])
def test_unpadded_trunk_map_equals_crop_scores_in_numpy_and_onnxruntime(arch, big, stride, run_onnx):
    net = ARCHITECTURES[arch].build(arch) if arch in ARCHITECTURES else network_from_spec(arch)
    params = net.init_params(1)
    conv_net, conv_params = to_fully_convolutional(net, params)
    c, h, w = net.input_shape
    image = np.random.default_rng(2).standard_normal((2, c, *big)).astype(np.float32)
    out_hw = ((big[0] - h) // stride + 1, (big[1] - w) // stride + 1)
    expected = _crop_scores(net, params, image, (h, w), stride, out_hw)
    numpy_map = conv_net.predict(image, conv_params)
    assert numpy_map.shape == (2, net.num_classes, *out_hw)
    assert _close(numpy_map, expected)
    onnx_bytes = export_onnx(conv_net, conv_params, fully_convolutional=True)
    onnx_map = run_onnx(onnx_bytes, image)
    assert onnx_map.shape == expected.shape and _close(onnx_map, expected)
    small = image[:, :, :h, :w].copy()  # the same file also answers on the original size
    assert _close(run_onnx(onnx_bytes, small)[:, :, 0, 0], net.predict(small, params))


def test_vgg16_layout_on_384_gives_a_6x6_map():
    net = ARCHITECTURES["vgg16"].build("vgg16")
    params = {k: np.zeros(s, np.float32) for k, s in net.param_shapes().items()}
    conv_net, _ = to_fully_convolutional(net, params)
    shapes = conv_net.shapes_for((3, 384, 384))
    assert shapes["maxpool5"] == (512, 12, 12)  # 384 / 32
    assert shapes["fc1"] == (4096, 6, 6) and conv_net.node("fc1").layer.size == 7
    assert shapes[conv_net.nodes[-1].name] == (1000, 6, 6)  # (12 - 7)/1 + 1


def test_padded_trunk_map_shape_in_onnxruntime_and_why_crops_differ(run_onnx):
    """A downsized VGG layout (3x3 P1 convs, five 2x2 pools): 64 -> 2x2x8 before the FCs, so a
    160x160 image gives (5 - 2) + 1 = 4 positions a side. With zero-padding a crop sees zeros at its
    border where the big image has pixels, so the map is not the crop scores (the notes' caveat)."""
    net = network_from_spec("INPUT[64x64x3] -> [CONV3-8 -> RELU -> POOL2]*5 -> FC-16 -> RELU -> FC-5")
    params = net.init_params(0)
    conv_net, conv_params = to_fully_convolutional(net, params)
    image = np.random.default_rng(0).standard_normal((1, 3, 160, 160)).astype(np.float32)
    onnx_map = run_onnx(export_onnx(conv_net, conv_params, fully_convolutional=True), image)
    assert onnx_map.shape == (1, 5, 4, 4)
    assert _close(onnx_map, conv_net.predict(image, conv_params))
    crops = _crop_scores(net, params, image, (64, 64), 32, (4, 4))
    assert (np.abs(onnx_map - crops).max(axis=1) > 1e-3 * np.abs(crops).max()).all()


def test_an_fc_over_a_non_square_volume_or_a_softmax_is_refused():
    net = network_from_spec("INPUT[8x4x1] -> FC-2")
    with pytest.raises(ShapeError, match="non-square 1x4x8 volume"):
        to_fully_convolutional(net, net.init_params(0))
    net = Network("sm", (1, 4, 4), [Node("f", Flatten()), Node("fc", Linear(units=3)), Node("s", Softmax())])
    with pytest.raises(ShapeError, match="'softmax' layer on a flat vector"):
        to_fully_convolutional(net, net.init_params(0))
