"""The activations of modern ConvNets (clip/ReLU6, leaky ReLU, sigmoid, hard sigmoid, hard swish, SiLU):
forward against the formulas element by element and against onnxruntime's operators, backward
against numeric gradients, float32 kept."""
import math
import warnings

import numpy as np
import pytest
from onnx import helper
from onnx_reference import assert_close, batch, run_graph

from kernels import Clip, HardSigmoid, HardSwish, LeakyReLU, Sigmoid, SiLU, ShapeError
from kernels.gradcheck import layer_gradient_errors


def logistic(v):
    return 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))


FORMULAS = [  # (layer, the definition for one value)
    (Clip(0.0, 6.0), lambda v: min(max(v, 0.0), 6.0)),
    (Clip(min=-0.5), lambda v: max(v, -0.5)),
    (Clip(max=0.25), lambda v: min(v, 0.25)),
    (LeakyReLU(0.1), lambda v: v if v > 0 else 0.1 * v),
    (Sigmoid(), logistic),
    (HardSigmoid(), lambda v: max(0.0, min(1.0, 0.2 * v + 0.5))),
    (HardSigmoid(alpha=1 / 6, beta=0.5), lambda v: max(0.0, min(1.0, v / 6 + 0.5))),
    (HardSwish(), lambda v: v * max(0.0, min(1.0, v / 6 + 0.5))),
    (SiLU(), lambda v: v * logistic(v)),
]


@pytest.mark.parametrize("layer, formula", FORMULAS, ids=lambda v: repr(v) if not callable(v) else "")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_activation_matches_its_formula(layer, formula, dtype):
    x = (np.random.default_rng(0).standard_normal((2, 3, 4, 5)) * 4).astype(dtype)  # reaches past +-3 and 6
    out, _ = layer.forward(x, {})
    assert out.dtype == dtype and out.shape == x.shape
    ref = np.vectorize(formula)(x.astype(np.float64))
    np.testing.assert_allclose(out, ref, rtol=1e-12 if dtype == np.float64 else 1e-6, atol=1e-7)


@pytest.mark.parametrize("layer", [Sigmoid(), SiLU()])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sigmoids_do_not_overflow(layer, dtype):
    x = np.array([[-1000.0, -100.0, 0.0, 100.0, 1000.0]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, _ = layer.forward(x, {})
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("layer, op, attrs, bounds", [
    (Clip(0.0, 6.0), "Clip", {}, (0.0, 6.0)),
    (Clip(min=-0.5), "Clip", {}, (-0.5, None)),
    (Clip(max=0.25), "Clip", {}, (None, 0.25)),
    (LeakyReLU(0.2), "LeakyRelu", {"alpha": 0.2}, None),
    (Sigmoid(), "Sigmoid", {}, None),
    (HardSigmoid(0.3, 0.4), "HardSigmoid", {"alpha": 0.3, "beta": 0.4}, None),
    (HardSigmoid(1 / 6, 0.5), "HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}, None),
    (HardSwish(), "HardSwish", {}, None),
])
def test_activation_matches_onnxruntime(layer, op, attrs, bounds):
    x = batch((2, 4, 5, 5)) * 4
    inputs, consts = ["x"], {}
    for name, v in zip(("min", "max"), bounds or ()):
        inputs.append(name if v is not None else "")
        if v is not None:
            consts[name] = np.array(v, dtype=np.float32)
    ref = run_graph([helper.make_node(op, inputs, ["y"], **attrs)], {"x": x}, consts)[0]
    assert_close(layer.forward(x, {})[0], ref)


def test_silu_matches_onnxruntime_sigmoid_times_input():
    """torch.onnx writes SiLU as Sigmoid then Mul; the layer must equal that pair."""
    x = batch((2, 4, 5, 5)) * 4
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["y"])]
    assert_close(SiLU().forward(x, {})[0], run_graph(nodes, {"x": x})[0])


def away_from(x, knees, margin=1e-3):
    """x with every value within ``margin`` of a kink moved away from it (numeric derivatives need smoothness)."""
    x = x.copy()
    for k in knees:
        near = np.abs(x - k) < margin
        x[near] = k + 2 * margin
    return x


@pytest.mark.parametrize("layer, knees", [
    (Clip(0.0, 6.0), (0.0, 6.0)), (Clip(min=-0.5), (-0.5,)), (Clip(max=0.25), (0.25,)),
    (LeakyReLU(0.1), (0.0,)), (Sigmoid(), ()), (HardSigmoid(), (-2.5, 2.5)), (HardSigmoid(1 / 6, 0.5), (-3.0, 3.0)),
    (HardSwish(), (-3.0, 3.0)), (SiLU(), ()),
])
def test_activation_backward(layer, knees):
    x = away_from(np.random.default_rng(1).standard_normal((2, 3, 4, 4)) * 4, knees)
    errors = layer_gradient_errors(layer, x, {})
    assert errors["x"] < 1e-6, errors


@pytest.mark.parametrize("layer", [Clip(0.0, 6.0), LeakyReLU(), Sigmoid(), HardSigmoid(), HardSwish(), SiLU()])
def test_activation_keeps_float32_and_takes_vectors(layer):
    for shape in ((2, 3, 4, 4), (2, 7)):
        x = batch(shape)
        out, cache = layer.forward(x, {})
        dx, dparams = layer.backward(np.ones_like(out), cache)
        assert out.dtype == dx.dtype == np.float32 and dx.shape == x.shape and dparams == {}


def test_clip_with_crossed_bounds_raises():
    with pytest.raises(ShapeError, match="min 6.0 must not exceed max 0.0"):
        Clip(6.0, 0.0).output_shape((3, 4, 4))
