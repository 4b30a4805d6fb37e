"""ONNX export: every emitter against the NumPy kernels, every architecture against the NumPy
reference in onnxruntime, and the model's metadata."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from bench.torchvision_nets import export as export_torchvision
from exporter import EXPORTER_VERSION
from exporter.architectures import ARCHITECTURES
from exporter.emitters import EMITTERS
from exporter.graph import Network, Node
from exporter.onnx_export import ExportError, build_model, export_onnx
from exporter.onnx_import import to_network
from kernels import (
    LAYER_TYPES, LRN, Add, AvgPool2d, BatchNorm, ChannelShuffle, ChannelSlice, Clip, Concat, Conv2d, Dropout, Flatten,
    GlobalAvgPool, GlobalMaxPool, HardSigmoid, HardSwish, LeakyReLU, Linear, MaxPool2d, Mul, ReLU, Sigmoid, SiLU, Softmax,
)

# One small network per layer kind, with hyperparameters chosen so that a wrong attribute shows:
# asymmetric pads, stride, dilation, groups; padded pools on negative inputs (max must ignore the
# padding, average must not count it); ceil-mode pools whose last window overhangs the padding; an
# LRN whose alpha/size term is far from negligible; clip bounds and activation knees inside the
# inputs' range; a shuffle and slices that are not the identity.
EMITTER_CASES = {
    "conv": [Node("c", Conv2d(filters=4, size=3, stride=2, pad=(2, 1, 0, 1), dilation=2, groups=2))],
    "maxpool": [Node("p", MaxPool2d(size=3, stride=2, pad=(1, 0, 1, 2))), Node("q", MaxPool2d(size=3, stride=2, rounding="ceil"))],
    "avgpool": [Node("p", AvgPool2d(size=3, stride=1, pad=1)),
                Node("q", AvgPool2d(size=3, stride=2, pad=(1, 1, 0, 0), rounding="ceil", count_include_pad=True))],
    "globalavgpool": [Node("g", GlobalAvgPool(), ("input",)), Node("v", GlobalAvgPool(keepdims=False), ("input",)),
                      Node("f", Flatten(), ("g",)), Node("s", Add(), ("f", "v"))],
    "globalmaxpool": [Node("g", GlobalMaxPool(), ("input",)), Node("v", GlobalMaxPool(keepdims=False), ("input",)),
                      Node("f", Flatten(), ("g",)), Node("s", Add(), ("f", "v"))],
    "relu": [Node("r", ReLU())],
    "clip": [Node("c", Clip(-1.0, 2.0)), Node("lo", Clip(min=-0.5)), Node("hi", Clip(max=0.25))],
    "leakyrelu": [Node("l", LeakyReLU(alpha=0.2))],
    "sigmoid": [Node("s", Sigmoid())],
    "hardsigmoid": [Node("h", HardSigmoid(alpha=0.3, beta=0.4))],
    "hardswish": [Node("h", HardSwish())],
    "silu": [Node("s", SiLU())],
    "dropout": [Node("d", Dropout(p=0.3))],
    "lrn": [Node("n", LRN(size=3, alpha=0.5, beta=0.6, k=1.5))],
    "batchnorm": [Node("b", BatchNorm(eps=1e-3))],
    "fc": [Node("f", Flatten()), Node("a", Linear(units=5)), Node("nb", Linear(units=3, bias=False))],
    "flatten": [Node("f", Flatten())],
    "concat": [Node("x", ReLU(), ("input",)), Node("y", Conv2d(filters=2, size=1), ("input",)),
               Node("cat", Concat(), ("x", "y", "input"))],
    "add": [Node("x", Conv2d(filters=4, size=1), ("input",)), Node("sum", Add(), ("x", "input")),
            Node("g", GlobalAvgPool(), ("sum",)), Node("bias", Add(), ("sum", "g"))],
    "mul": [Node("g", GlobalAvgPool(), ("input",)), Node("s", Sigmoid(), ("g",)), Node("se", Mul(), ("input", "s"))],
    "channelshuffle": [Node("c", Conv2d(filters=6, size=1)), Node("s", ChannelShuffle(groups=3))],
    "channelslice": [Node("a", ChannelSlice(0, 2), ("input",)), Node("b", ChannelSlice(1, 4), ("input",)),
                     Node("cat", Concat(), ("b", "a"))],
    "softmax": [Node("f", Flatten()), Node("s", Softmax())],
}


def _params_with_random_state(net: Network, seed: int = 0) -> dict:
    """He weights, plus random biases and batch-norm statistics so every initializer matters."""
    rng = np.random.default_rng(seed)
    params = net.init_params(seed)
    for key, value in params.items():
        if key.rsplit(".", 1)[1] in ("b", "beta", "mean"):
            params[key] = (rng.standard_normal(value.shape) * 0.1).astype(np.float32)
        elif key.endswith((".gamma", ".var")):
            params[key] = rng.uniform(0.5, 1.5, value.shape).astype(np.float32)
    return params


def test_every_layer_kind_has_exactly_one_emitter_and_a_case():
    assert set(EMITTERS) == set(LAYER_TYPES) == set(EMITTER_CASES)


def _vector_output(nodes: list[Node]) -> list[Node]:
    """Append a flatten when a case ends on a volume, so the export has (N, D) scores."""
    last = nodes[-1].layer
    return nodes if isinstance(last, (Linear, Flatten, Softmax)) else nodes + [Node("out", Flatten())]


@pytest.mark.parametrize("kind", sorted(EMITTER_CASES))
def test_emitter_matches_the_numpy_layer(kind, run_onnx):
    net = Network(kind, (4, 7, 7), _vector_output(EMITTER_CASES[kind]))
    params = _params_with_random_state(net)
    x = (np.random.default_rng(1).standard_normal((3, 4, 7, 7)) * 3 - 1).astype(np.float32)
    expected = net.predict(x, params)
    got = run_onnx(export_onnx(net, params), x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


# NumPy and onnxruntime add float32 products in different orders, so their scores differ by a few
# ulps per layer: observed relative differences are ~1e-6 of the largest score for these nets
# (depth up to 22 weight layers, fan-in up to 25,088). 2e-5 of the score scale leaves a 10x margin
# while any real export mistake (a wrong pad, group, bias or weight layout) changes scores by O(1).
RELATIVE_TOLERANCE = 2e-5


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ("vgg16", "zfnet", "alexnet") else n
                                  for n in ARCHITECTURES])
def test_architecture_numpy_reference_equals_onnxruntime(name, run_onnx):
    net = ARCHITECTURES[name].build(name)
    params = _params_with_random_state(net, seed=3)
    x = np.random.default_rng(4).standard_normal((2, *net.input_shape)).astype(np.float32)
    expected = net.predict(x, params)
    onnx_bytes = export_onnx(net, params, {"architecture": name})
    got = run_onnx(onnx_bytes, x)
    del onnx_bytes, params
    assert got.shape == expected.shape == (2, net.num_classes)
    scale = np.abs(expected).max()
    assert scale > 0.1 and np.abs(expected[0] - expected[1]).max() > 1e-3 * scale  # a real, input-dependent answer
    assert np.abs(got - expected).max() <= RELATIVE_TOLERANCE * scale


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["squeezenet1_1", "mobilenet_v2", "mobilenet_v3_small",
                                  "shufflenet_v2_x0_5", "efficientnet_b0"])
def test_imported_torchvision_net_exports_back_to_the_same_scores(arch, run_onnx):
    """torch's ONNX file mapped onto layers, then written again by the emitters: onnxruntime gives the
    same scores on both files (every layer kind torchvision's nets use, on real graphs)."""
    exported = export_torchvision(arch, seed=0)
    network, params, _ = to_network(onnx.load_from_string(exported.onnx_bytes), arch, exported.onnx_bytes)
    x = np.random.default_rng(5).standard_normal((2, 3, exported.size, exported.size)).astype(np.float32)
    expected = run_onnx(exported.onnx_bytes, x)
    got = run_onnx(export_onnx(network, params), x)
    assert np.abs(got - expected).max() <= RELATIVE_TOLERANCE * np.abs(expected).max()


def test_dynamic_batch_and_metadata(run_onnx):
    net = ARCHITECTURES["cifar-tiny"].build("cifar-tiny")
    params = net.init_params(0)
    meta = {"architecture": "cifar-tiny", "labels": ["a", "b"], "seed": 0, "spec": "INPUT[32x32x3] -> ..."}
    data = export_onnx(net, params, meta)
    model = onnx.load_from_string(data)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["architecture"] == "cifar-tiny" and json.loads(props["labels"]) == ["a", "b"]
    assert props["seed"] == "0" and props["exporter_version"] == EXPORTER_VERSION
    assert model.opset_import[0].version == 17
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "input" and out.name == "scores"
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", 3, 32, 32]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 10]
    for n in (1, 5):
        x = np.random.default_rng(n).standard_normal((n, 3, 32, 32)).astype(np.float32)
        np.testing.assert_allclose(run_onnx(data, x), net.predict(x, params), rtol=1e-4, atol=1e-5)


def test_initializers_carry_the_parameter_keys():
    net = ARCHITECTURES["lenet5"].build("lenet5")
    params = net.init_params(0)
    model = build_model(net, params)
    assert {t.name for t in model.graph.initializer} == set(params)


def test_export_refuses_wrong_parameters_and_unknown_kinds():
    net = ARCHITECTURES["lenet5"].build("lenet5")
    params = net.init_params(0)
    params["fc1.W"] = params["fc1.W"][:10]
    with pytest.raises(ValueError, match=r"fc1.W.*\(400, 120\)"):
        export_onnx(net, params)

    class Mystery(ReLU):
        kind = "mystery"

    odd = Network("odd", (1, 2, 2), [Node("m", Mystery()), Node("f", Flatten())])
    with pytest.raises(ExportError, match="no ONNX emitter for layer kind 'mystery'"):
        export_onnx(odd, {})
