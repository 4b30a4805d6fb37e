"""Network.backward plus the softmax cross-entropy loss against a centered numeric gradient, through a
small graph holding every trainable path the trainer relies on: CONV, ReLU, LRN, max and average
pooling, a channel concat of two branches, a residual add, and FC layers."""
import numpy as np

from exporter.graph import Network, Node
from kernels import LRN, Add, AvgPool2d, Concat, Conv2d, Flatten, Linear, MaxPool2d, ReLU
from kernels.gradcheck import eval_numerical_gradient
from kernels.softmax import softmax_cross_entropy


def branchy_network() -> Network:
    return Network("branchy", (2, 8, 8), [
        Node("c1", Conv2d(4, 3, pad=1)),
        Node("r1", ReLU(), ("c1",)),
        Node("lrn", LRN(size=3, alpha=0.5, beta=0.75, k=1.0), ("r1",)),
        Node("a", Conv2d(3, 1), ("lrn",)),
        Node("b", Conv2d(3, 3, pad=1), ("lrn",)),
        Node("cat", Concat(), ("a", "b")),
        Node("res", Conv2d(6, 1), ("cat",)),
        Node("sum", Add(), ("cat", "res")),
        Node("pool", MaxPool2d(2), ("sum",)),
        Node("avg", AvgPool2d(2), ("pool",)),
        Node("flat", Flatten(), ("avg",)),
        Node("fc1", Linear(7), ("flat",)),
        Node("r2", ReLU(), ("fc1",)),
        Node("fc2", Linear(3), ("r2",)),
    ])


def loss_of(net, params, x, y):
    scores, _ = net.forward(x, params)
    return softmax_cross_entropy(scores, y)[0]


def test_loss_gradient_through_the_whole_graph_matches_numeric():
    rng = np.random.default_rng(0)
    net = branchy_network()
    params = net.init_params(seed=3, dtype=np.float64)
    for k in params:  # non-zero biases so every term of every backward is exercised
        if k.endswith(".b"):
            params[k] = rng.normal(0, 0.1, params[k].shape)
    x = rng.normal(size=(3, 2, 8, 8))
    y = np.array([0, 2, 1])

    scores, caches = net.forward(x, params)
    _, dscores = softmax_cross_entropy(scores, y)
    grads, dx = net.backward(dscores, caches, with_input=True)

    assert set(grads) == set(params)
    for key, value in params.items():
        numeric = eval_numerical_gradient(lambda _: loss_of(net, params, x, y), value)
        scale = np.abs(numeric).max()
        assert scale > 1e-6, f"{key}: the loss should depend on it"
        np.testing.assert_allclose(grads[key], numeric, rtol=0, atol=1e-6 * max(1.0, scale), err_msg=key)
    numeric_x = eval_numerical_gradient(lambda v: loss_of(net, params, v, y), x)
    np.testing.assert_allclose(dx, numeric_x, rtol=0, atol=1e-6)



def test_the_fashion_layer_pattern_in_training_mode_matches_numeric():
    """CONV -> BN (batch statistics) -> RELU -> POOL -> FC -> RELU -> DROPOUT -> FC, as the fashion net trains."""
    from exporter.spec import network_from_spec

    net = network_from_spec("INPUT[8x8x1] -> CONV3-3 -> BN -> RELU -> POOL2 -> [CONV3-4 -> BN -> RELU] -> POOL2"
                            " -> FC-5 -> RELU -> DROPOUT-0.3 -> FC-3", "small-fashion")
    rng = np.random.default_rng(1)
    params = net.init_params(seed=2, dtype=np.float64)
    for k in params:
        if k.endswith((".b", ".beta")):
            params[k] = rng.normal(0, 0.1, params[k].shape)
        if k.endswith(".gamma"):
            params[k] = rng.uniform(0.5, 1.5, params[k].shape)
    x = rng.normal(size=(4, 1, 8, 8))
    y = np.array([0, 2, 1, 1])

    def loss(p, v):
        scores, _ = net.forward(v, p, rng=np.random.default_rng(7))  # the same dropout mask every call
        return softmax_cross_entropy(scores, y)[0]

    scores, caches = net.forward(x, params, rng=np.random.default_rng(7))
    _, dscores = softmax_cross_entropy(scores, y)
    grads, dx = net.backward(dscores, caches, with_input=True)
    assert set(grads) == {k for k in params if net.trainable(k)}
    for key in grads:
        numeric = eval_numerical_gradient(lambda _: loss(params, x), params[key])
        np.testing.assert_allclose(grads[key], numeric, rtol=0, atol=1e-6 * max(1.0, np.abs(numeric).max()), err_msg=key)
    np.testing.assert_allclose(dx, eval_numerical_gradient(lambda v: loss(params, v), x), rtol=0, atol=1e-6)
