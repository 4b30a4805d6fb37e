"""Forward passes against naive loop-by-loop references written from the definitions (small sizes)."""
import numpy as np
import pytest

from kernels import (LRN, Add, AvgPool2d, BatchNorm, Concat, Conv2d, Dropout, Flatten, GlobalAvgPool, Linear,
                     MaxPool2d, ReLU, Softmax)
from kernels.softmax import softmax_cross_entropy


def padded(x, pads, value=0.0):
    top, left, bottom, right = pads
    n, c, h, w = x.shape
    out = np.full((n, c, h + top + bottom, w + left + right), value)
    out[:, :, top:top + h, left:left + w] = x
    return out


def naive_conv(x, w, b, stride, pads, dilation, groups):
    """Each output is the dot product of one filter with its (dilated) receptive field in its group."""
    xp = padded(x, pads)
    n, _, hp, wp = xp.shape
    k, cg, f, _ = w.shape
    span = dilation * (f - 1) + 1
    h2, w2 = (hp - span) // stride + 1, (wp - span) // stride + 1
    out = np.zeros((n, k, h2, w2))
    for img in range(n):
        for filt in range(k):
            g = filt // (k // groups)
            for r in range(h2):
                for c in range(w2):
                    field = xp[img, g * cg:(g + 1) * cg,
                               r * stride:r * stride + span:dilation, c * stride:c * stride + span:dilation]
                    out[img, filt, r, c] = np.sum(field * w[filt]) + b[filt]
    return out


def naive_pool(x, size, stride, pads, reduce):
    """Reduce each window over its real (unpadded) cells only."""
    n, c, h, w = x.shape
    top, left, bottom, right = pads
    h2, w2 = (h + top + bottom - size) // stride + 1, (w + left + right - size) // stride + 1
    out = np.zeros((n, c, h2, w2))
    for r in range(h2):
        for col in range(w2):
            r0, c0 = r * stride - top, col * stride - left
            window = x[:, :, max(r0, 0):min(r0 + size, h), max(c0, 0):min(c0 + size, w)]
            out[:, :, r, col] = reduce(window.reshape(n, c, -1), axis=2)
    return out


def naive_lrn(x, size, alpha, beta, k):
    """ONNX LRN: square_sum over [c - floor((size-1)/2), c + ceil((size-1)/2)], alpha divided by size."""
    out = np.zeros_like(x)
    channels = x.shape[1]
    for c in range(channels):
        lo = max(0, c - (size - 1) // 2)
        hi = min(channels - 1, c + int(np.ceil((size - 1) / 2)))
        square_sum = np.sum(x[:, lo:hi + 1] ** 2, axis=1)
        out[:, c] = x[:, c] / (k + alpha / size * square_sum) ** beta
    return out


CONV_CASES = [
    # (C, H, W, filters, size, stride, pad, dilation, groups[, rounding])
    (3, 7, 7, 4, 3, 1, 1, 1, 1),
    (3, 9, 9, 5, 5, 2, 2, 1, 1),
    (4, 10, 8, 6, 3, 2, (1, 0, 2, 1), 2, 2),
    (6, 5, 6, 6, 1, 1, 0, 1, 3),
    (8, 6, 6, 4, 3, 1, (0, 2, 2, 0), 1, 2),
    (16, 5, 5, 8, 3, 1, 1, 1, 1),
    (3, 11, 11, 4, 3, 4, 0, 1, 1),
    (3, 6, 8, 5, 3, 1, 1, 1, 1),
    (2, 8, 16, 3, 3, 2, (1, 1, 0, 0), 1, 1),
    (4, 6, 8, 4, 5, 1, 2, 1, 2),
    (6, 9, 7, 6, 3, 1, (2, 1, 0, 2), 2, 6),  # depthwise, dilated, asymmetric padding
    (4, 8, 9, 8, 3, 2, (0, 2, 1, 1), 3, 4, "floor"),  # depthwise, two filters per channel, a trailing column dropped
    (8, 7, 7, 8, 3, 2, (1, 1, 1, 1), 2, 4),  # grouped and dilated (regnet-style groups of 2)
    (3, 8, 8, 4, 3, 2, 0, 1, 1, "floor"),  # squeezenet's conv1: floor drops an unpadded input row and column
    (3, 10, 9, 4, 7, 2, 3, 1, 1, "floor"),  # resnet's conv1: floor drops a padded row
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conv_matches_naive_loops(case, dtype):
    c, h, w, k, f, s, p, d, g, *rounding = case
    rng = np.random.default_rng(0)
    layer = Conv2d(k, f, s, p, d, g, rounding=rounding[0] if rounding else "exact")
    x = rng.standard_normal((2, c, h, w)).astype(dtype)
    params = {"W": rng.standard_normal((k, c // g, f, f)).astype(dtype), "b": rng.standard_normal(k).astype(dtype)}
    out, _ = layer.forward(x, params)
    assert out.dtype == dtype
    assert out.shape == (2, *layer.output_shape((c, h, w)))
    tol = 1e-12 if dtype == np.float64 else 1e-5
    as64 = {name: v.astype(np.float64) for name, v in params.items()}
    ref = naive_conv(x.astype(np.float64), as64["W"], as64["b"], s, layer.pads, d, g)
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol * np.abs(ref).max())


@pytest.mark.parametrize("memory", [(0, 1, 2, 3), (0, 2, 3, 1), (1, 0, 2, 3), (3, 2, 1, 0)])
def test_conv_reads_any_memory_layout(memory):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 6, 6))
    strided = np.ascontiguousarray(x.transpose(memory)).transpose(np.argsort(memory))
    assert np.array_equal(strided, x)
    params = {"W": rng.standard_normal((5, 4, 3, 3)), "b": rng.standard_normal(5)}
    for layer in (Conv2d(5, 3, pad=1), Conv2d(5, 3, stride=2, pad=(1, 1, 0, 0))):
        np.testing.assert_allclose(layer.forward(strided, params)[0], layer.forward(x, params)[0], rtol=1e-12)


def test_conv_without_bias():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 5, 5))
    w = rng.standard_normal((4, 3, 3, 3))
    out, _ = Conv2d(4, 3, pad=1, bias=False).forward(x, {"W": w})
    np.testing.assert_allclose(out, naive_conv(x, w, np.zeros(4), 1, (1, 1, 1, 1), 1, 1), rtol=1e-12, atol=1e-12)


POOL_CASES = [
    # (H, W, size, stride, pad)
    (8, 8, 2, None, 0),
    (7, 7, 3, 2, 0),
    (6, 6, 3, 1, 1),
    (5, 6, 2, 1, (1, 0, 0, 1)),
    (9, 9, 3, 2, (1, 1, 1, 1)),
]


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pools_match_naive_loops(case, kind):
    h, w, size, stride, pad = case
    layer = (MaxPool2d if kind == "max" else AvgPool2d)(size, stride, pad)
    x = np.random.default_rng(3).standard_normal((2, 3, h, w)) - 3.0  # mostly negative: padding must never win
    out, _ = layer.forward(x, {})
    ref = naive_pool(x, size, layer.step, layer.pads, np.max if kind == "max" else np.mean)
    assert out.shape == (2, *layer.output_shape((3, h, w)))
    np.testing.assert_allclose(out, ref, rtol=1e-12)


def test_pools_keep_float32():
    x = np.random.default_rng(4).standard_normal((2, 3, 6, 6)).astype(np.float32)
    for layer in (MaxPool2d(2), AvgPool2d(3, 1, 1), GlobalAvgPool()):
        assert layer.forward(x, {})[0].dtype == np.float32


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_lrn_matches_onnx_formula(size):
    x = np.random.default_rng(5).standard_normal((2, 7, 3, 3)) * 10
    layer = LRN(size=size, alpha=0.3, beta=0.75, k=2.0)
    np.testing.assert_allclose(layer.forward(x, {})[0], naive_lrn(x, size, 0.3, 0.75, 2.0), rtol=1e-12)


def test_lrn_alexnet_defaults():
    layer = LRN()
    assert (layer.size, layer.k, layer.alpha, layer.beta) == (5, 2.0, 1e-4, 0.75)
    x = np.random.default_rng(6).standard_normal((1, 8, 2, 2)).astype(np.float32) * 30
    out, _ = layer.forward(x, {})
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, naive_lrn(x.astype(np.float64), 5, 1e-4, 0.75, 2.0), rtol=1e-5)


def test_global_avg_pool():
    x = np.random.default_rng(7).standard_normal((2, 3, 4, 5))
    out, _ = GlobalAvgPool().forward(x, {})
    assert out.shape == (2, 3, 1, 1)
    for n in range(2):
        for c in range(3):
            assert out[n, c, 0, 0] == pytest.approx(sum(x[n, c].ravel()) / 20, rel=1e-12)


def test_batchnorm_inference_formula():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 2, 2))
    p = {"gamma": rng.standard_normal(3), "beta": rng.standard_normal(3), "mean": rng.standard_normal(3),
         "var": rng.uniform(0.5, 2.0, 3)}
    out, _ = BatchNorm(eps=1e-3).forward(x, p)
    for c in range(3):
        ref = p["gamma"][c] * (x[:, c] - p["mean"][c]) / np.sqrt(p["var"][c] + 1e-3) + p["beta"][c]
        np.testing.assert_allclose(out[:, c], ref, rtol=1e-12)


def test_linear_flatten_relu():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 2, 2))
    flat, _ = Flatten().forward(x, {})
    assert flat.shape == (2, 12) and flat[1, 5] == x[1, 1, 0, 1]  # row-major NCHW order
    w, b = rng.standard_normal((12, 4)), rng.standard_normal(4)
    out, _ = Linear(4).forward(flat, {"W": w, "b": b})
    for n in range(2):
        for u in range(4):
            assert out[n, u] == pytest.approx(sum(flat[n, d] * w[d, u] for d in range(12)) + b[u], rel=1e-12)
    relu, _ = ReLU().forward(x, {})
    assert np.array_equal(relu, np.where(x > 0, x, 0.0))


def test_flatten_of_a_strided_volume_is_nchw_order():
    x = np.arange(24.0).reshape(1, 2, 3, 4)
    nhwc_memory = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    assert np.array_equal(Flatten().forward(nhwc_memory, {})[0], np.arange(24.0).reshape(1, 24))


def test_softmax_is_stable_and_normalised():
    scores = np.array([[1000.0, 1001.0, 1002.0], [-5.0, 0.0, 5.0]])
    probs, _ = Softmax().forward(scores, {})
    e = np.exp([0.0, 1.0, 2.0])
    np.testing.assert_allclose(probs[0], e / e.sum(), rtol=1e-12)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)


def test_softmax_cross_entropy_value():
    scores = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]])
    loss, dscores = softmax_cross_entropy(scores, np.array([0, 2]))
    expected = -(np.log(np.exp(2.0) / np.exp(scores[0]).sum()) + np.log(np.exp(0.3) / np.exp(scores[1]).sum())) / 2
    assert loss == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(dscores.sum(axis=1), 0.0, atol=1e-15)
    with pytest.raises(ValueError, match="labels"):
        softmax_cross_entropy(scores, np.array([0, 3]))


def test_concat_and_add():
    rng = np.random.default_rng(10)
    a, b = rng.standard_normal((2, 2, 3, 3)), rng.standard_normal((2, 3, 3, 3))
    out, _ = Concat().forward([a, b], {})
    assert out.shape == (2, 5, 3, 3) and np.array_equal(out[:, 2:], b) and np.array_equal(out[:, :2], a)
    c = rng.standard_normal((2, 2, 3, 3))
    assert np.array_equal(Add().forward([a, c], {})[0], a + c)


def test_dropout_identity_at_inference_and_inverted_in_training():
    x = np.ones((1000, 10))
    layer = Dropout(p=0.3)
    assert layer.forward(x, {})[0] is x
    out, _ = layer.forward(x, {}, rng=np.random.default_rng(11))
    kept = out != 0
    assert np.allclose(out[kept], 1 / 0.7)
    assert abs(kept.mean() - 0.7) < 0.01  # 10,000 Bernoulli(0.7) draws: std 0.0046
    again, _ = layer.forward(x, {}, rng=np.random.default_rng(11))
    assert np.array_equal(out, again)


@pytest.mark.parametrize("layer, in_shape", [
    (Conv2d(4, 3, pad=1), (3, 6, 6)), (Conv2d(4, 3, dilation=2, groups=2), (4, 6, 6)), (MaxPool2d(2), (3, 6, 6)),
    (AvgPool2d(3, 1, 1), (3, 6, 6)), (GlobalAvgPool(), (3, 6, 6)), (ReLU(), (3, 6, 6)), (LRN(), (3, 6, 6)),
    (BatchNorm(), (3, 6, 6)), (Flatten(), (3, 6, 6)), (Linear(5), (12,)), (Softmax(), (12,)), (Dropout(), (12,)),
])
def test_float32_in_float32_out_even_with_float64_parameters(layer, in_shape):
    rng = np.random.default_rng(12)
    params = {name: rng.uniform(0.5, 1.5, shape) for name, shape in layer.param_shapes(in_shape).items()}
    x = rng.standard_normal((2, *in_shape)).astype(np.float32)
    out, cache = layer.forward(x, params)
    assert out.dtype == np.float32
    dx, dparams = layer.backward(np.ones_like(out), cache)
    assert dx.dtype == np.float32 and dx.shape == x.shape
