"""Floor and ceil rounding of pooling windows and average pooling that counts the padding: shape
rule, forward against naive loops and onnxruntime's MaxPool/AveragePool, backward against numeric
gradients."""
import numpy as np
import pytest
from onnx import helper
from onnx_reference import assert_close, batch, run_graph

from kernels import AvgPool2d, MaxPool2d, ShapeError
from kernels.gradcheck import layer_gradient_errors


def naive_pool(x, size, stride, pads, out_hw, reduce, count_include_pad=False):
    """Each output reduces its window's real cells; the average divides by the real cells, or with
    count_include_pad by the cells inside the declared padding (never ceil mode's overhang)."""
    n, c, h, w = x.shape
    top, left, bottom, right = pads
    out = np.zeros((n, c, *out_hw))
    for r in range(out_hw[0]):
        for col in range(out_hw[1]):
            r0, c0 = r * stride - top, col * stride - left
            r1, c1 = min(r0 + size, h + bottom), min(c0 + size, w + right)
            window = x[:, :, max(r0, 0):min(r1, h), max(c0, 0):min(c1, w)].reshape(n, c, -1)
            if reduce == "max":
                out[:, :, r, col] = window.max(axis=2)
            else:
                divisor = (r1 - r0) * (c1 - c0) if count_include_pad else window.shape[2]
                out[:, :, r, col] = window.sum(axis=2) / divisor
    return out


@pytest.mark.parametrize("in_hw, size, stride, pad, expected", [
    ((112, 112), 3, 2, 0, (56, 56)),  # googlenet maxpool1 at 224: floor mode would need 55.5
    ((111, 111), 3, 2, 0, (55, 55)),  # squeezenet1_1 at 224: exact, ceil changes nothing
    ((56, 56), 3, 2, 0, (28, 28)),  # googlenet maxpool2
    ((14, 14), 2, 2, 0, (7, 7)),
    ((5, 5), 2, 2, 1, (3, 3)),  # ceil gives 4, but the 4th window would start in the bottom padding
    ((6, 7), 3, 2, (1, 0, 0, 1), (3, 4)),
])
def test_ceil_mode_output_size(in_hw, size, stride, pad, expected):
    for cls in (MaxPool2d, AvgPool2d):
        assert cls(size, stride, pad, rounding="ceil").output_shape((3, *in_hw)) == (3, *expected)


@pytest.mark.parametrize("in_hw, size, stride, pad, expected", [
    ((112, 112), 3, 2, 1, (56, 56)),  # resnet's maxpool at 224: 55.5 rounded down
    ((7, 8), 2, 2, 0, (3, 4)),
    ((5, 5), 3, 2, (1, 0, 0, 0), (2, 2)),
])
def test_floor_output_size(in_hw, size, stride, pad, expected):
    for cls in (MaxPool2d, AvgPool2d):
        assert cls(size, stride, pad, rounding="floor").output_shape((3, *in_hw)) == (3, *expected)


def test_exact_rounding_still_refuses_a_fractional_output():
    with pytest.raises(ShapeError, match="55.5 is not an integer"):
        MaxPool2d(3, 2).output_shape((3, 112, 112))
    with pytest.raises(ShapeError, match="rounding must be one of"):
        MaxPool2d(3, 2, rounding="round").output_shape((3, 112, 112))


CASES = [  # (H, W, size, stride, pad, rounding)
    (112 // 8, 112 // 8, 3, 2, 0, "ceil"),
    (7, 7, 3, 2, 1, "ceil"),
    (5, 5, 2, 2, 1, "ceil"),
    (6, 7, 3, 2, (1, 0, 0, 1), "ceil"),
    (8, 6, 3, 3, (0, 2, 1, 0), "ceil"),
    (7, 7, 3, 2, 1, "exact"),
    (5, 6, 2, 1, (1, 0, 0, 1), "exact"),
    (14, 14, 3, 2, 1, "floor"),
    (8, 7, 3, 2, (0, 1, 2, 0), "floor"),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kind, count_include_pad", [("max", False), ("avg", False), ("avg", True)])
def test_pools_match_naive_loops_and_onnxruntime(case, kind, count_include_pad):
    h, w, size, stride, pad, rounding = case
    if kind == "max":
        layer = MaxPool2d(size, stride, pad, rounding)
    else:
        layer = AvgPool2d(size, stride, pad, rounding, count_include_pad)
    x = batch((2, 3, h, w)) - (3.0 if kind == "max" else -1.0)  # max: mostly negative, so leaked padding would win
    out, _ = layer.forward(x, {})
    assert out.shape == (2, *layer.output_shape((3, h, w)))
    naive = naive_pool(x.astype(np.float64), size, stride, layer.pads, out.shape[2:], kind, count_include_pad)
    np.testing.assert_allclose(out, naive, rtol=1e-5, atol=1e-6)
    attrs = dict(kernel_shape=[size, size], strides=[stride, stride], pads=list(layer.pads), ceil_mode=int(rounding == "ceil"))
    if kind == "avg":
        attrs["count_include_pad"] = int(count_include_pad)
    node = helper.make_node("MaxPool" if kind == "max" else "AveragePool", ["x"], ["y"], **attrs)
    assert_close(out, run_graph([node], {"x": x})[0])


def test_count_include_pad_differs_from_excluding_it():
    x = np.ones((1, 1, 4, 4), dtype=np.float32)
    with_pad, _ = AvgPool2d(3, 1, 1, count_include_pad=True).forward(x, {})
    without, _ = AvgPool2d(3, 1, 1).forward(x, {})
    assert with_pad[0, 0, 0, 0] == pytest.approx(4 / 9) and without[0, 0, 0, 0] == 1.0


def distinct_values(shape, rng):
    """Values spaced at least 0.01 apart in random order: no ties within a max window."""
    return rng.permutation(np.arange(np.prod(shape)) * 0.01 - 1.0).reshape(shape)


@pytest.mark.parametrize("layer, hw", [
    (MaxPool2d(3, 2, rounding="ceil"), (6, 6)), (MaxPool2d(2, 2, 1, rounding="ceil"), (5, 5)),
    (MaxPool2d(3, 2, (1, 0, 0, 1), rounding="ceil"), (6, 7)),
    (AvgPool2d(3, 2, rounding="ceil"), (6, 6)), (AvgPool2d(3, 2, 1, rounding="ceil", count_include_pad=True), (6, 7)),
    (AvgPool2d(3, 1, (0, 1, 2, 1), count_include_pad=True), (5, 5)),
    (MaxPool2d(3, 2, 1, rounding="floor"), (6, 6)), (AvgPool2d(3, 2, (0, 1, 2, 0), rounding="floor", count_include_pad=True), (7, 8)),
])
def test_pool_mode_backward(layer, hw):
    errors = layer_gradient_errors(layer, distinct_values((2, 3, *hw), np.random.default_rng(2)), {})
    assert set(errors) == {"x"} and errors["x"] < 1e-6, errors


def test_rounding_modes_keep_float32():
    x = batch((2, 3, 7, 7))
    for layer in (MaxPool2d(2, 2, rounding="ceil"), AvgPool2d(2, 2, 1, rounding="ceil", count_include_pad=True),
                  MaxPool2d(2, 2, rounding="floor")):
        out, cache = layer.forward(x, {})
        dx, _ = layer.backward(np.ones_like(out), cache)
        assert out.dtype == dx.dtype == np.float32 and dx.shape == x.shape
