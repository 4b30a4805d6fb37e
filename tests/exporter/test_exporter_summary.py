"""The summary's per-layer figures and totals against the notes' numbers."""
from __future__ import annotations

import numpy as np

from exporter.architectures import ARCHITECTURES
from exporter.spec import network_from_spec
from exporter.summary import summarize


def test_vgg16_matches_the_notes_table():
    s = summarize(ARCHITECTURES["vgg16"].build("vgg16"))
    assert s.params == 138_357_544
    rows = {r.name: r for r in s.layers}
    assert rows["conv1"].volume == "224x224x64" and rows["conv1"].activations == 3_211_264  # the notes' 3.2M
    assert rows["conv1"].params == 3 * 3 * 3 * 64 + 64 == 1_792
    assert rows["fc1"].params - 4096 == 102_760_448
    # The notes' table, volume by volume (W*H*D), with the input and without the in-place ReLUs:
    table = [224 * 224 * 3] + [224 * 224 * 64] * 2 + [112 * 112 * 64] + [112 * 112 * 128] * 2 + [56 * 56 * 128] \
        + [56 * 56 * 256] * 3 + [28 * 28 * 256] + [28 * 28 * 512] * 3 + [14 * 14 * 512] + [14 * 14 * 512] * 3 \
        + [7 * 7 * 512] + [4096, 4096, 1000]
    assert s.activations == sum(table) == 15_237_608  # not the notes' stated "24M"
    assert s.activation_bytes == 4 * 15_237_608
    assert s.macs == sum(r.macs for r in s.layers) > 15e9
    text = s.table()
    assert "224x224x64" in text and "138,357,544" in text and "15,237,608" in text


def test_alexnet_first_volume():
    s = summarize(ARCHITECTURES["alexnet"].build("alexnet"))
    conv1 = s.layers[1]
    assert (conv1.name, conv1.volume, conv1.activations) == ("conv1", "55x55x96", 290_400)
    assert conv1.params == 96 * (11 * 11 * 3) + 96 == 34_944
    assert conv1.macs == 290_400 * 363  # one 363-value dot product per neuron
    assert s.params == 60_965_224


def test_cifar_tiny_rows_and_json():
    s = summarize(ARCHITECTURES["cifar-tiny"].build("cifar-tiny"))
    rows = {r.name: r for r in s.layers}
    assert rows["conv1"].params == 912 and rows["fc1"].params == 30_730
    assert rows["conv1"].macs == 32 * 32 * 12 * 75 and rows["fc1"].macs == 3072 * 10
    assert rows["relu1"].activations == 0 and rows["flatten1"].activations == 0
    assert rows["maxpool1"].activations == 16 * 16 * 12
    j = s.to_json()
    assert {"params", "activations", "macs", "layers"} <= set(j)
    assert j["params"] == 31_642 == sum(layer["params"] for layer in j["layers"])
    assert j["activations"] == 3072 + 32 * 32 * 12 + 16 * 16 * 12 + 10
    assert j["layers"][1]["output_shape"] == [12, 32, 32] and j["layers"][1]["volume"] == "32x32x12"


def test_totals_are_sums_of_rows_for_every_architecture():
    for name, arch in ARCHITECTURES.items():
        net = arch.build(name)
        s = summarize(net)
        assert s.params == net.num_params()
        assert s.activations == sum(r.activations for r in s.layers)
        assert s.macs == sum(node.layer.macs(net.node_input_shape(node, net.shapes)) for node in net.nodes)


def test_batchnorm_statistics_are_state_not_params():
    s = summarize(network_from_spec("INPUT[4x4x2] -> CONV3-3 -> BN -> RELU -> FC-2"))
    bn = next(r for r in s.layers if r.kind == "batchnorm")
    assert (bn.params, bn.state) == (6, 6)
    assert s.state == 6 and "non-trainable state" in s.table()
    assert s.params == (3 * 2 * 9 + 3) + 6 + (48 * 2 + 2)
    assert int(np.prod(bn.output_shape)) == bn.activations == 48
