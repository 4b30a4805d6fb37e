"""Layers that combine or rearrange channels: broadcasting Add and Mul (squeeze-excitation), channel
shuffle and slice (ShuffleNet), global max/average pooling with and without keepdims, and the FC
layer as ONNX Gemm (transB) and MatMul heads. Forward against loops and onnxruntime, backward
against numeric gradients."""
import itertools

import numpy as np
import pytest
from onnx import helper
from onnx_reference import assert_close, batch, run_graph

from kernels import Add, ChannelShuffle, ChannelSlice, GlobalAvgPool, GlobalMaxPool, Linear, Mul, ShapeError
from kernels.gradcheck import layer_gradient_errors

BROADCASTS = [((4, 3, 5), (4, 1, 1)), ((4, 1, 1), (4, 3, 5)), ((4, 3, 5), (4, 3, 5)), ((4, 3, 5), (1, 3, 1)), ((6,), (6,))]


def naive_elementwise(a, b, op):
    """Each output value from the two inputs at the same index, a size-1 axis read at index 0."""
    shape = tuple(max(p, q) for p, q in zip(a.shape, b.shape))
    out = np.zeros(shape)
    for idx in itertools.product(*map(range, shape)):
        ia = tuple(i if s > 1 else 0 for i, s in zip(idx, a.shape))
        ib = tuple(i if s > 1 else 0 for i, s in zip(idx, b.shape))
        out[idx] = op(a[ia], b[ib])
    return out


@pytest.mark.parametrize("shapes", BROADCASTS)
@pytest.mark.parametrize("layer, op, onnx_op", [(Add(), np.add, "Add"), (Mul(), np.multiply, "Mul")])
def test_broadcasting_add_and_mul(shapes, layer, op, onnx_op):
    a, b = batch((2, *shapes[0]), 1), batch((2, *shapes[1]), 2)
    out, _ = layer.forward([a, b], {})
    assert out.shape == (2, *layer.output_shape(shapes))
    np.testing.assert_allclose(out, naive_elementwise(a.astype(np.float64), b.astype(np.float64), op), rtol=1e-6)
    assert_close(out, run_graph([helper.make_node(onnx_op, ["a", "b"], ["y"])], {"a": a, "b": b})[0])
    errors = layer_gradient_errors(layer, [a.astype(np.float64), b.astype(np.float64)], {})
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("shapes, why", [
    (((4, 3, 5), (2, 1, 1)), "do not broadcast"), (((4, 3, 5), (4,)), "same rank"), (((4, 3, 5), (4, 3, 4)), "do not broadcast"),
])
def test_mismatched_shapes_raise(shapes, why):
    for layer in (Add(), Mul()):
        with pytest.raises(ShapeError, match=why):
            layer.output_shape(shapes)


def test_squeeze_excitation_gate_scales_each_channel():
    x, gate = batch((2, 3, 4, 4)), batch((2, 3, 1, 1), 1)
    out, _ = Mul().forward([x, gate], {})
    for n in range(2):
        for c in range(3):
            np.testing.assert_allclose(out[n, c], x[n, c] * gate[n, c, 0, 0], rtol=1e-6)


@pytest.mark.parametrize("channels, groups", [(6, 2), (6, 3), (12, 4), (5, 1), (4, 4)])
def test_channel_shuffle_is_the_reshape_transpose_reshape(channels, groups):
    x = batch((2, channels, 3, 4))
    layer = ChannelShuffle(groups)
    out, _ = layer.forward(x, {})
    per_group = channels // groups
    for k in range(per_group):
        for g in range(groups):
            assert np.array_equal(out[:, k * groups + g], x[:, g * per_group + k])
    shape = np.array([2, groups, per_group, 3, 4], dtype=np.int64)
    back = np.array([2, channels, 3, 4], dtype=np.int64)
    nodes = [helper.make_node("Reshape", ["x", "split"], ["r"]), helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3, 4]),
             helper.make_node("Reshape", ["t", "back"], ["y"])]
    assert_close(out, run_graph(nodes, {"x": x}, {"split": shape, "back": back})[0])
    assert layer_gradient_errors(layer, x.astype(np.float64), {})["x"] < 1e-6


def test_channel_shuffle_needs_divisible_channels():
    with pytest.raises(ShapeError, match="channels 6 must divide into 4 groups"):
        ChannelShuffle(4).output_shape((6, 2, 2))


def test_two_channel_slices_are_onnx_split_in_halves():
    x = batch((2, 8, 3, 3))
    halves = run_graph([helper.make_node("Split", ["x", "sizes"], ["y0", "y1"], axis=1)], {"x": x},
                       {"sizes": np.array([4, 4], dtype=np.int64)}, outputs=("y0", "y1"))
    for layer, ref in zip((ChannelSlice(0, 4), ChannelSlice(4, 8)), halves):
        assert_close(layer.forward(x, {})[0], ref)


@pytest.mark.parametrize("start, stop", [(0, 3), (2, 7), (0, 8), (7, 8)])
def test_channel_slice_matches_onnx_slice_and_gradient(start, stop):
    x = batch((2, 8, 3, 3))
    layer = ChannelSlice(start, stop)
    consts = {"starts": np.array([start]), "ends": np.array([stop]), "axes": np.array([1])}
    ref = run_graph([helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["y"])], {"x": x}, consts)[0]
    assert_close(layer.forward(x, {})[0], ref)
    assert layer.output_shape((8, 3, 3)) == (stop - start, 3, 3)
    assert layer_gradient_errors(layer, x.astype(np.float64), {})["x"] < 1e-6


@pytest.mark.parametrize("start, stop", [(3, 3), (-1, 2), (2, 9)])
def test_channel_slice_out_of_range_raises(start, stop):
    with pytest.raises(ShapeError, match="start < stop <= channels 8"):
        ChannelSlice(start, stop).output_shape((8, 3, 3))


@pytest.mark.parametrize("layer, nodes", [
    (GlobalAvgPool(), [helper.make_node("GlobalAveragePool", ["x"], ["y"])]),
    (GlobalAvgPool(keepdims=False), [helper.make_node("ReduceMean", ["x"], ["y"], axes=[2, 3], keepdims=0)]),
    (GlobalMaxPool(), [helper.make_node("GlobalMaxPool", ["x"], ["y"])]),
    (GlobalMaxPool(keepdims=False), [helper.make_node("ReduceMax", ["x"], ["y"], axes=[2, 3], keepdims=0)]),
])
def test_global_pools_match_onnxruntime(layer, nodes):
    x = batch((2, 5, 4, 3))
    out, _ = layer.forward(x, {})
    assert out.shape == (2, *layer.output_shape((5, 4, 3)))
    assert out.shape == ((2, 5, 1, 1) if layer.keepdims else (2, 5))
    assert_close(out, run_graph(nodes, {"x": x})[0])


@pytest.mark.parametrize("layer", [GlobalAvgPool(), GlobalAvgPool(keepdims=False), GlobalMaxPool(), GlobalMaxPool(keepdims=False)])
def test_global_pool_backward(layer):
    x = np.random.default_rng(3).permutation(np.arange(2 * 3 * 4 * 4) * 0.01).reshape(2, 3, 4, 4)  # no ties
    assert layer_gradient_errors(layer, x, {})["x"] < 1e-6


def test_fc_is_onnx_gemm_with_transposed_weights_and_matmul():
    """torch.onnx writes nn.Linear as Gemm(x, W_torch, b, transB=1) with W_torch (units, D); the FC layer's
    W is (D, units), the transpose. A bias-free head is MatMul(x, W)."""
    x, w_torch, b = batch((3, 12)), batch((5, 12), 1), batch((5,), 2)
    gemm = run_graph([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)], {"x": x}, {"w": w_torch, "b": b})[0]
    assert_close(Linear(5).forward(x, {"W": w_torch.T, "b": b})[0], gemm)
    matmul = run_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], {"x": x}, {"w": w_torch.T.copy()})[0]
    assert_close(Linear(5, bias=False).forward(x, {"W": w_torch.T})[0], matmul)
