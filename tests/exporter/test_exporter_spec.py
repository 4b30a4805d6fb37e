"""The layer-pattern spec: what parses into which layers, and errors that name token and position."""
from __future__ import annotations

import pytest

from exporter.spec import SpecError, network_from_spec, parse_spec
from kernels import LRN, AvgPool2d, BatchNorm, Conv2d, Dropout, Flatten, GlobalAvgPool, Linear, MaxPool2d, ReLU

ISSUE_EXAMPLE = "INPUT[32x32x3] -> [[CONV3-16 -> RELU]*2 -> POOL2]*2 -> [FC-64 -> RELU]*1 -> FC-10"


def test_the_issue_example_expands_repetitions_and_inserts_flatten():
    net = network_from_spec(ISSUE_EXAMPLE, "example")
    kinds = [n.layer.kind for n in net.nodes]
    block = ["conv", "relu", "conv", "relu", "maxpool"]
    assert kinds == block * 2 + ["flatten", "fc", "relu", "fc"]
    assert [n.name for n in net.nodes[:5]] == ["conv1", "relu1", "conv2", "relu2", "maxpool1"]
    assert net.input_shape == (3, 32, 32)
    # CONV3 keeps 32x32 (P defaults to 1), each POOL2 halves: 32 -> 16 -> 8
    assert net.shapes["maxpool2"] == (16, 8, 8) and net.shapes["flatten1"] == (16 * 8 * 8,)
    assert net.output_shape == (10,)
    assert net.nodes[0].layer == Conv2d(filters=16, size=3, stride=1, pad=1)


@pytest.mark.parametrize("token, layer", [
    ("CONV5-12/P2", Conv2d(filters=12, size=5, pad=2)),
    ("CONV5-12", Conv2d(filters=12, size=5, pad=2)),
    ("CONV2-8", Conv2d(filters=8, size=2, pad=0)),
    ("CONV11-96/S4/P0", Conv2d(filters=96, size=11, stride=4, pad=0)),
    ("conv3-8/g2/d2/p2", Conv2d(filters=8, size=3, pad=2, dilation=2, groups=2)),
    ("CONV7-96/S2/P0,0,1,1", Conv2d(filters=96, size=7, stride=2, pad=(0, 0, 1, 1))),
    ("POOL2", MaxPool2d(size=2)),
    ("MAXPOOL3/S2/P1", MaxPool2d(size=3, stride=2, pad=1)),
    ("AVGPOOL3/S1/P1", AvgPool2d(size=3, stride=1, pad=1)),
    ("GAP", GlobalAvgPool()),
    ("LRN", LRN(size=5, alpha=1e-4, beta=0.75, k=2.0)),
    ("LRN3", LRN(size=3)),
    ("BN", BatchNorm()),
    ("RELU", ReLU()),
    ("DROPOUT", Dropout(p=0.5)),
    ("DROPOUT-0.25", Dropout(p=0.25)),
])
def test_each_layer_token(token, layer):
    spec = parse_spec(f"INPUT[8x8x4] -> {token}")
    assert [lay for lay, _ in spec.layers] == [layer]


def test_input_is_written_w_x_h_x_d_and_becomes_nchw():
    net = network_from_spec("INPUT[20x10x3] -> CONV3-4 -> FC-2")
    assert net.input_shape == (3, 10, 20)
    assert net.shapes["conv1"] == (4, 10, 20)
    assert [n.layer for n in net.nodes[1:]] == [Flatten(), Linear(units=2)]


def test_repeat_zero_and_spaces():
    net = network_from_spec("INPUT[4x4x1]->[FC-3->RELU]*0->FC-2")
    assert [n.layer.kind for n in net.nodes] == ["flatten", "fc"]
    assert network_from_spec("INPUT [ 4 x 4 x 1 ]  ->  FC-2").input_shape == (1, 4, 4)


@pytest.mark.parametrize("spec, message", [
    ("", "empty"),
    ("CONV3-16 -> FC-10", "expected INPUT\\[<W>x<H>x<D>\\] but found 'CONV3-16' at character 1"),
    ("INPUT[32x3] -> FC-10", "malformed input 'INPUT\\[32x3\\]' at character 1"),
    ("INPUT[32x32x0] -> FC-10", "malformed input .* at character 1"),
    ("INPUT[32x32x3]", "no layers"),
    ("INPUT[32x32x3] -> CON3-16", "unknown layer 'CON3-16' at character 19; known layers: CONV<F>-<K>"),
    ("INPUT[32x32x3] -> CONV3-", "malformed layer 'CONV3-' at character 19: expected CONV<F>-<K>"),
    ("INPUT[32x32x3] -> CONV3-16/Q2", "malformed layer 'CONV3-16/Q2' at character 19"),
    ("INPUT[32x32x3] -> CONV3-16/S2/S1", "option /S1 of 'CONV3-16/S2/S1' at character 19 is repeated"),
    ("INPUT[32x32x3] -> CONV3-16/S1,1,2,2", "option /S1,1,2,2 of 'CONV3-16/S1,1,2,2' at character 19 takes one integer"),
    ("INPUT[32x32x3] -> POOL2/G2", "malformed layer 'POOL2/G2' at character 19: expected POOL<F>"),
    ("INPUT[32x32x3] -> FC10", "malformed layer 'FC10' at character 19: expected FC-<N>"),
    ("INPUT[32x32x3] -> [CONV3-16 -> RELU*2", "expected '->' or '\\]' but found '\\*' at character 36"),
    ("INPUT[32x32x3] -> [RELU]*", "expected a repeat count after '\\*' but found the end of the spec \\(character 26\\)"),
    ("INPUT[32x32x3] -> CONV3-16 RELU", "expected '->' but found 'RELU' at character 28"),
    ("INPUT[32x32x3] -> CONV3-16 -> ", "expected a layer or '\\[' but found the end of the spec"),
    ("INPUT[32x32x3] -> CONV3-16 -> %", "unexpected character '%' at character 31"),
    ("INPUT[32x32x3] -> ]", "expected a layer or '\\[' but found '\\]' at character 19"),
])
def test_syntax_errors_name_token_and_position(spec, message):
    with pytest.raises(SpecError, match=message):
        network_from_spec(spec)


@pytest.mark.parametrize("spec, token, position, why", [
    # W=32, F=3, P=0, S=2: (32 - 3)/2 + 1 = 15.5
    ("INPUT[32x32x3] -> CONV3-16/S2/P0 -> FC-10", "CONV3-16/S2/P0", 19, "15.5 is not an integer"),
    # the notes' example: W=10, F=3, P=0, S=2 gives 4.5
    ("INPUT[10x10x3] -> CONV3-4/S2/P0", "CONV3-4/S2/P0", 19, "4.5 is not an integer"),
    ("INPUT[32x32x3] -> RELU -> POOL3", "POOL3", 27, "is not an integer"),
    ("INPUT[4x4x3] -> CONV7-2/P1", "CONV7-2/P1", 17, "larger than the padded"),
    ("INPUT[8x8x3] -> CONV3-4/G2", "CONV3-4/G2", 17, "divide into 2 groups"),
    ("INPUT[8x8x3] -> FC-0", "FC-0", 17, "units must be positive"),
    ("INPUT[8x8x3] -> CONV0-4", "CONV0-4", 17, "size must be positive"),
    ("INPUT[8x8x3] -> FC-4 -> CONV3-2", "CONV3-2", 25, "expected a \\(C, H, W\\) volume"),
    ("INPUT[8x8x3] -> DROPOUT-1.5", "DROPOUT-1.5", 17, "p must be in"),
])
def test_sizing_errors_name_the_layer_token(spec, token, position, why):
    with pytest.raises(SpecError, match=rf"layer '{token}' at character {position} does not fit: .*{why}"):
        network_from_spec(spec)


def test_repeated_layers_report_the_token_inside_the_repetition():
    # the third POOL2 gets 1x1 after 4 -> 2 -> 1: the token is the one written once at character 29
    with pytest.raises(SpecError, match="layer 'POOL2' at character 29 does not fit"):
        network_from_spec("INPUT[4x4x1] -> [CONV3-2 -> POOL2]*3")
