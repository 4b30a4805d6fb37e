"""Every backward against a centered numeric gradient (h = 1e-5) on small random float64 volumes.

A centered difference is exact to O(h^2) ~ 1e-10 relative for these smooth functions, so a correct
backward agrees to well under 1e-6 elementwise relative error; a wrong index or a missing term gives
errors near 1. ReLU and max pooling are smooth almost everywhere: inputs are kept away from their
kinks (|x| > 1e-3 and distinct window values) so the numeric derivative is well defined.
"""
import numpy as np
import pytest

from kernels import (LRN, Add, AvgPool2d, BatchNorm, Concat, Conv2d, Dropout, Flatten, GlobalAvgPool, Linear,
                     MaxPool2d, Mul, ReLU, SiLU, Softmax)
from kernels.gradcheck import eval_numerical_gradient, eval_numerical_gradient_array, layer_gradient_errors, rel_error
from kernels.softmax import softmax_cross_entropy

TOL = 1e-6


def random_params(layer, in_shape, rng):
    params = {name: rng.standard_normal(shape) for name, shape in layer.param_shapes(in_shape).items()}
    if "var" in params:
        params["var"] = rng.uniform(0.5, 2.0, params["var"].shape)
    return params


def check_layer(layer, x, params, rng=None, seed=0):
    """Compare dx and every trainable dparam with numeric gradients of sum(forward * dout)."""
    out, cache = layer.forward(x, params, rng=rng)
    dout = np.random.default_rng(seed).standard_normal(out.shape)
    dx, dparams = layer.backward(dout, cache)

    def fresh_rng():
        return None if rng is None else np.random.default_rng(1234)

    num_dx = eval_numerical_gradient_array(lambda v: layer.forward(v, params, rng=fresh_rng())[0], x, dout)
    assert dx.shape == x.shape and dx.dtype == np.float64
    assert rel_error(dx, num_dx) < TOL
    trainable = [name for name in params if name not in layer.non_trainable]
    assert sorted(dparams) == sorted(trainable)
    for name in trainable:
        num = eval_numerical_gradient_array(lambda v: layer.forward(x, {**params, name: v}, rng=fresh_rng())[0],
                                            params[name], dout)
        assert dparams[name].shape == params[name].shape
        assert rel_error(dparams[name], num) < TOL, name


@pytest.mark.parametrize("layer, in_shape", [
    (Conv2d(3, 3, pad=1), (2, 7, 7)),
    (Conv2d(4, 3, stride=2, pad=1), (3, 7, 7)),
    (Conv2d(2, 2, stride=1, pad=(1, 0, 0, 1)), (3, 5, 4)),
    (Conv2d(4, 3, stride=2, pad=(1, 0, 2, 1), dilation=2, groups=2), (4, 8, 8)),
    (Conv2d(4, 3, stride=1, pad=2, dilation=2), (2, 5, 5)),
    (Conv2d(6, 1, groups=3), (6, 3, 3)),
    (Conv2d(2, 3, stride=3, groups=2, bias=False), (4, 6, 6)),
    (Conv2d(3, 2, groups=1), (12, 4, 4)),
    (Conv2d(3, 3, pad=1), (2, 3, 4)),
    (Conv2d(4, 3, stride=2, pad=(1, 1, 0, 0), groups=2), (2, 4, 8)),
    (Conv2d(2, 2, stride=1, pad=(0, 1, 0, 0)), (3, 3, 2)),
    (Conv2d(3, 3, stride=1, pad=(2, 1, 0, 2), dilation=2, groups=3), (3, 6, 5)),
    (Conv2d(6, 3, stride=2, pad=(0, 2, 1, 1), dilation=2, groups=3, rounding="floor"), (3, 7, 8)),
    (Conv2d(2, 3, stride=2, rounding="floor"), (2, 6, 7)),
])
def test_conv_backward(layer, in_shape):
    rng = np.random.default_rng(1)
    check_layer(layer, rng.standard_normal((2, *in_shape)), random_params(layer, in_shape, rng))


def distinct_values(shape, rng):
    """Values spaced at least 0.01 apart in random order: no ties within a pooling window."""
    return rng.permutation(np.arange(np.prod(shape)) * 0.01 - 1.0).reshape(shape)


@pytest.mark.parametrize("layer, hw", [
    (MaxPool2d(2), 6), (MaxPool2d(3, 2), 7), (MaxPool2d(3, 1, 1), 5), (MaxPool2d(2, 1, (1, 0, 0, 1)), 5),
    (AvgPool2d(2), 6), (AvgPool2d(3, 2, 1), 7), (AvgPool2d(3, 1, (0, 1, 2, 1)), 5), (GlobalAvgPool(), 5),
])
def test_pool_backward(layer, hw):
    check_layer(layer, distinct_values((2, 3, hw, hw), np.random.default_rng(2)), {})


def test_maxpool_routes_a_tie_to_one_input():
    x = np.zeros((1, 1, 2, 2))
    out, cache = MaxPool2d(2).forward(x, {})
    dx, _ = MaxPool2d(2).backward(np.ones_like(out), cache)
    assert dx.sum() == 1.0 and dx.max() == 1.0


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_lrn_backward(size):
    rng = np.random.default_rng(3)
    check_layer(LRN(size=size, alpha=0.5, beta=0.75, k=1.0), rng.standard_normal((2, 6, 3, 3)), {})


def test_batchnorm_backward_gives_no_gradient_to_running_statistics():
    rng = np.random.default_rng(4)
    layer = BatchNorm()
    check_layer(layer, rng.standard_normal((2, 3, 3, 3)), random_params(layer, (3, 3, 3), rng))


def test_batchnorm_training_mode_backward_includes_the_batch_statistics():
    rng = np.random.default_rng(4)
    layer = BatchNorm()
    check_layer(layer, rng.standard_normal((3, 3, 3, 3)) * 2 + 1, random_params(layer, (3, 3, 3), rng),
                rng=np.random.default_rng(0))


def test_batchnorm_training_mode_normalises_with_the_batch_and_reports_its_statistics():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 3, 5, 5)) * 3 + 2
    params = {"gamma": np.ones(3), "beta": np.zeros(3), "mean": np.zeros(3), "var": np.ones(3)}
    out, cache = BatchNorm(eps=0.0).forward(x, params, rng=np.random.default_rng(0))
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), 1, rtol=1e-12)
    stats = cache[-1]
    np.testing.assert_allclose(stats.mean, [x[:, c].mean() for c in range(3)])
    np.testing.assert_allclose(stats.var, [x[:, c].var() for c in range(3)])
    assert stats.count == 4 * 5 * 5


def test_linear_backward():
    rng = np.random.default_rng(5)
    for layer in (Linear(4), Linear(3, bias=False)):
        check_layer(layer, rng.standard_normal((3, 6)), random_params(layer, (6,), rng))


def test_relu_backward():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 4, 4))
    x[np.abs(x) < 1e-3] = 0.5
    check_layer(ReLU(), x, {})


def test_flatten_and_softmax_backward():
    rng = np.random.default_rng(7)
    check_layer(Flatten(), rng.standard_normal((2, 3, 2, 2)), {})
    check_layer(Softmax(), rng.standard_normal((3, 5)), {})


def test_dropout_backward_with_a_fixed_rng():
    x = np.random.default_rng(8).standard_normal((4, 10))
    check_layer(Dropout(p=0.4), x, {}, rng=np.random.default_rng(1234))
    check_layer(Dropout(p=0.4), x, {})


def check_multi_input(layer, xs, seed=0):
    out, cache = layer.forward(xs, {})
    dout = np.random.default_rng(seed).standard_normal(out.shape)
    dxs, dparams = layer.backward(dout, cache)
    assert dparams == {} and len(dxs) == len(xs)
    for i, (x, dx) in enumerate(zip(xs, dxs)):
        num = eval_numerical_gradient_array(lambda v: layer.forward(xs[:i] + [v] + xs[i + 1:], {})[0], x, dout)
        assert dx.shape == x.shape
        assert rel_error(dx, num) < TOL


def test_concat_backward():
    rng = np.random.default_rng(9)
    check_multi_input(Concat(), [rng.standard_normal((2, c, 3, 3)) for c in (2, 1, 3)])


def test_add_backward():
    rng = np.random.default_rng(10)
    check_multi_input(Add(), [rng.standard_normal((2, 3, 2, 2)) for _ in range(2)])


def test_softmax_cross_entropy_gradient():
    rng = np.random.default_rng(11)
    scores, y = rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    _, dscores = softmax_cross_entropy(scores, y)
    num = eval_numerical_gradient(lambda s: softmax_cross_entropy(s, y)[0], scores)
    assert rel_error(dscores, num) < TOL


def test_gradient_check_catches_a_wrong_backward():
    rng = np.random.default_rng(12)
    layer = Conv2d(2, 3, pad=1)
    x, params = rng.standard_normal((1, 2, 4, 4)), random_params(layer, (2, 4, 4), rng)
    out, cache = layer.forward(x, params)
    dout = rng.standard_normal(out.shape)
    dx, _ = layer.backward(dout, cache)
    num = eval_numerical_gradient_array(lambda v: layer.forward(v, params)[0], x, dout)
    assert rel_error(dx, num) < TOL
    assert rel_error(dx[:, :, ::-1], num) > 1e-2


def test_layer_gradient_errors_flags_a_wrong_backward():
    class SiLUWithoutTheProductRule(SiLU):
        def backward(self, dout, cache):
            _, s = cache
            return dout * s, {}

    class MulWithSwappedGradients(Mul):
        def backward(self, dout, cache):
            a, b = cache
            return [dout * a, dout * b], {}

    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, 3, 4, 4))
    assert layer_gradient_errors(SiLU(), x, {})["x"] < TOL
    assert layer_gradient_errors(SiLUWithoutTheProductRule(), x, {})["x"] > 1e-2
    pair = [rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((2, 3, 1, 1))]
    assert max(layer_gradient_errors(Mul(), pair, {}).values()) < TOL
    with pytest.raises(ValueError):  # dout * a has a's shape, not the gate's (2, 3, 1, 1)
        layer_gradient_errors(MulWithSwappedGradients(), pair, {})
    same = [rng.standard_normal((2, 3, 4, 4)) for _ in range(2)]
    errors = layer_gradient_errors(MulWithSwappedGradients(), same, {})
    assert set(errors) == {"x0", "x1"} and min(errors.values()) > 1e-2
