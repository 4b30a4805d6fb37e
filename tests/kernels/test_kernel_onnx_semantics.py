"""Forward passes against onnxruntime running the one ONNX operator the exporter emits for each layer.

Inputs are float32; the tolerance is 1e-5 of the output's scale (float32 rounding of sums of at most a
few hundred products, accumulated in a different order by the two implementations).
"""
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from kernels import LRN, AvgPool2d, BatchNorm, Conv2d, GlobalAvgPool, MaxPool2d

OPSET = 17


def run_one_node(op, x, initializers=(), **attributes):
    """Run a single ONNX operator on x with onnxruntime; initializers are (name, array) pairs."""
    names = ["x"] + [name for name, _ in initializers]
    node = helper.make_node(op, names, ["y"], **attributes)
    graph = helper.make_graph(
        [node], op.lower(),
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(value, name) for name, value in initializers],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def assert_close(out, ref):
    assert out.dtype == np.float32 and out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def batch(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("case", [
    # (C, H, W, filters, size, stride, pad, dilation, groups[, rounding])
    (3, 32, 32, 12, 5, 1, 2, 1, 1),
    (3, 35, 35, 8, 11, 4, 0, 1, 1),
    (8, 10, 8, 6, 3, 2, (1, 0, 2, 1), 2, 2),
    (16, 8, 8, 16, 3, 1, 1, 1, 4),
    (32, 6, 6, 8, 1, 1, 0, 1, 1),
    (6, 9, 7, 6, 3, 1, (2, 1, 0, 2), 2, 6),
    (4, 8, 9, 8, 3, 2, (0, 2, 1, 1), 3, 4, "floor"),
    (3, 9, 10, 4, 7, 2, 3, 1, 1, "floor"),
    (32, 7, 7, 32, 5, 2, (2, 2, 2, 2), 1, 32),
])
def test_conv_matches_onnx_conv(case):
    c, h, w, k, f, s, p, d, g, *rounding = case
    layer = Conv2d(k, f, s, p, d, g, rounding=rounding[0] if rounding else "exact")
    x = batch((2, c, h, w))
    wts, b = batch((k, c // g, f, f), 1), batch((k,), 2)
    ref = run_one_node("Conv", x, [("W", wts), ("b", b)], kernel_shape=[f, f], strides=[s, s],
                       pads=list(layer.pads), dilations=[d, d], group=g)
    assert_close(layer.forward(x, {"W": wts, "b": b})[0], ref)


POOL_CASES = [  # (H, W, size, stride, pad)
    (8, 8, 2, None, 0), (9, 9, 3, 2, 0), (6, 6, 3, 1, 1), (7, 8, 3, 2, (1, 0, 1, 1)), (5, 5, 2, 1, (0, 0, 1, 1)),
]


@pytest.mark.parametrize("case", POOL_CASES)
def test_maxpool_matches_onnx_maxpool(case):
    h, w, f, s, p = case
    layer = MaxPool2d(f, s, p)
    x = batch((2, 3, h, w)) - 3.0  # mostly negative, so a padded zero would win if padding leaked in
    ref = run_one_node("MaxPool", x, kernel_shape=[f, f], strides=[layer.step] * 2, pads=list(layer.pads))
    assert_close(layer.forward(x, {})[0], ref)


@pytest.mark.parametrize("case", POOL_CASES)
def test_avgpool_matches_onnx_averagepool_without_padding_in_the_count(case):
    h, w, f, s, p = case
    layer = AvgPool2d(f, s, p)
    x = batch((2, 3, h, w)) + 1.0
    ref = run_one_node("AveragePool", x, kernel_shape=[f, f], strides=[layer.step] * 2, pads=list(layer.pads),
                       count_include_pad=0)
    assert_close(layer.forward(x, {})[0], ref)


def test_global_avg_pool_matches_onnx():
    x = batch((2, 5, 7, 6))
    assert_close(GlobalAvgPool().forward(x, {})[0], run_one_node("GlobalAveragePool", x))


@pytest.mark.parametrize("size, alpha, beta, k", [
    (5, 1e-4, 0.75, 2.0), (3, 0.5, 0.6, 1.0), (7, 0.1, 0.75, 2.0), (1, 1.0, 0.5, 1.0),
])
def test_lrn_matches_onnx_lrn(size, alpha, beta, k):
    """onnxruntime accepts odd sizes only; even windows are checked against the formula in the naive tests."""
    layer = LRN(size=size, alpha=alpha, beta=beta, k=k)
    x = batch((2, 9, 4, 4)) * 5
    ref = run_one_node("LRN", x, size=size, alpha=alpha, beta=beta, bias=k)
    assert_close(layer.forward(x, {})[0], ref)


def test_batchnorm_matches_onnx_batchnormalization():
    rng = np.random.default_rng(3)
    p = {"gamma": rng.standard_normal(4), "beta": rng.standard_normal(4), "mean": rng.standard_normal(4),
         "var": rng.uniform(0.2, 3.0, 4)}
    p = {name: v.astype(np.float32) for name, v in p.items()}
    x = batch((2, 4, 5, 5))
    ref = run_one_node("BatchNormalization", x, [(name, p[name]) for name in ("gamma", "beta", "mean", "var")],
                       epsilon=1e-3)
    assert_close(BatchNorm(eps=1e-3).forward(x, p)[0], ref)
