"""Network: wiring checks, shapes, He initialization, JSON round trip, and backward through branches."""
from __future__ import annotations

import json

import numpy as np
import pytest

from exporter.graph import Network, Node
from kernels import Add, BatchNorm, Concat, Conv2d, Flatten, Linear, MaxPool2d, ReLU, ShapeError


def branchy_network() -> Network:
    """The input feeds two branches (concat), whose result feeds a residual add: two branch points."""
    return Network("branchy", (2, 4, 4), [
        Node("conv_a", Conv2d(filters=3, size=3, pad=1), ("input",)),
        Node("relu_a", ReLU(), ("conv_a",)),
        Node("conv_b", Conv2d(filters=2, size=1), ("input",)),
        Node("cat", Concat(), ("relu_a", "conv_b")),
        Node("conv_c", Conv2d(filters=5, size=3, pad=(0, 1, 2, 1), stride=1), ("cat",)),
        Node("bn", BatchNorm(), ("conv_c",)),
        Node("res", Add(), ("bn", "cat")),
        Node("pool", MaxPool2d(size=2), ("res",)),
        Node("flat", Flatten(), ("pool",)),
        Node("fc", Linear(units=3), ("flat",)),
    ])


def test_shapes_and_param_shapes_follow_the_layer_rules():
    net = branchy_network()
    assert net.shapes["cat"] == (5, 4, 4)
    assert net.shapes["conv_c"] == (5, 4, 4)  # (4 - 3 + 0 + 2)/1 + 1 rows, (4 - 3 + 2)/1 + 1 columns
    assert net.output_shape == (3,) and net.num_classes == 3
    shapes = net.param_shapes()
    assert shapes["conv_c.W"] == (5, 5, 3, 3) and shapes["fc.W"] == (5 * 2 * 2, 3)
    assert net.num_params() == (3 * 2 * 9 + 3) + (2 * 2 + 2) + (5 * 5 * 9 + 5) + 2 * 5 + (20 * 3 + 3)
    assert net.num_params(trainable_only=False) == net.num_params() + 2 * 5


@pytest.mark.parametrize("nodes, message", [
    ([Node("a", ReLU(), ("nope",))], "not an earlier node"),
    ([Node("a", ReLU()), Node("a", ReLU(), ("a",))], "used twice"),
    ([Node("a.b", ReLU())], "must match"),
    ([Node("a", ReLU()), Node("b", Add(), ("a",))], "takes 2 inputs"),
    ([Node("a", ReLU()), Node("b", Concat(), ("a",))], "two or more"),
    ([Node("a", ReLU()), Node("b", ReLU(), ("input",))], "never used"),
])
def test_bad_wiring_is_rejected_with_the_node_named(nodes, message):
    with pytest.raises(ValueError, match=message):
        Network("bad", (1, 4, 4), nodes)


def test_a_layer_that_does_not_fit_names_the_node_and_the_volume():
    with pytest.raises(ShapeError, match=r"node 'c'.*\(3, 10, 10\).*4.5"):
        Network("bad", (3, 10, 10), [Node("c", Conv2d(filters=4, size=3, stride=2))])


def test_init_params_is_deterministic_he_and_batchnorm_identity():
    net = Network("he", (64, 8, 8), [Node("conv", Conv2d(filters=256, size=3, pad=1)), Node("bn", BatchNorm()),
                                    Node("flat", Flatten()), Node("fc", Linear(units=10))])
    a, b, c = net.init_params(7), net.init_params(7), net.init_params(8)
    assert all(np.array_equal(a[k], b[k]) for k in a) and not np.array_equal(a["conv.W"], c["conv.W"])
    assert all(v.dtype == np.float32 for v in a.values())
    assert np.std(a["conv.W"]) == pytest.approx(np.sqrt(2 / (64 * 9)), rel=0.02)  # fan_in = C*F*F
    assert np.std(a["fc.W"]) == pytest.approx(np.sqrt(2 / (256 * 64)), rel=0.02)  # fan_in = D
    assert not a["conv.b"].any() and not a["bn.beta"].any() and not a["bn.mean"].any()
    assert (a["bn.gamma"] == 1).all() and (a["bn.var"] == 1).all()


def test_to_dict_round_trips_through_json():
    net = branchy_network()
    again = Network.from_dict(json.loads(json.dumps(net.to_dict())))
    assert again.to_dict() == net.to_dict()
    assert again.nodes == net.nodes and again.shapes == net.shapes
    params = net.init_params(0)
    x = np.random.default_rng(0).standard_normal((2, 2, 4, 4)).astype(np.float32)
    assert np.array_equal(again.predict(x, params), net.predict(x, params))


def test_forward_rejects_a_batch_of_the_wrong_shape():
    net = branchy_network()
    params = net.init_params(0)
    with pytest.raises(ShapeError, match=r"expected input of shape \(N, 2, 4, 4\), got \(2, 3, 4, 4\)"):
        net.forward(np.zeros((2, 3, 4, 4), np.float32), params)
    with pytest.raises(ShapeError, match=r"fc.W"):
        net.forward(np.zeros((2, 2, 6, 6), np.float32), params)


def _float64_params(net: Network, rng: np.random.Generator) -> dict:
    params = {k: v.astype(np.float64) for k, v in net.init_params(1).items()}
    params["bn.gamma"] = rng.uniform(0.5, 1.5, 5)
    params["bn.beta"] = rng.standard_normal(5)
    params["bn.mean"] = rng.standard_normal(5) * 0.1
    params["bn.var"] = rng.uniform(0.5, 2.0, 5)
    for k in params:
        if k.endswith(".b"):
            params[k] = rng.standard_normal(params[k].shape) * 0.1
    return params


def test_backward_matches_centered_numeric_gradients_through_branches():
    """Loss = sum(scores * G): its gradient on every parameter and on the input, against
    (L(p + h) - L(p - h)) / 2h in float64. The input and the concat output each feed two
    consumers, so their gradients are sums; a missed accumulation shows as a large error."""
    rng = np.random.default_rng(0)
    net = branchy_network()
    params = _float64_params(net, rng)
    x = rng.standard_normal((3, 2, 4, 4))
    g = rng.standard_normal((3, 3))

    def loss() -> float:
        return float((net.forward(x, params)[0] * g).sum())

    scores, caches = net.forward(x, params)
    dparams, dx = net.backward(g, caches, with_input=True)
    assert set(dparams) == {k for k in params if net.trainable(k)}

    def numeric(array: np.ndarray) -> np.ndarray:
        grad = np.zeros_like(array)
        for idx in np.ndindex(array.shape):
            old = array[idx]
            array[idx] = old + 1e-6
            up = loss()
            array[idx] = old - 1e-6
            down = loss()
            array[idx] = old
            grad[idx] = (up - down) / 2e-6
        return grad

    for key, analytic in [*dparams.items(), ("input", dx)]:
        expected = numeric(x if key == "input" else params[key])
        rel = np.abs(analytic - expected).max() / max(np.abs(expected).max(), 1e-8)
        assert rel < 1e-6, f"{key}: relative error {rel:.2e}"


def test_predict_equals_forward_and_dropout_needs_an_rng():
    from kernels import Dropout
    net = Network("d", (1, 4, 4), [Node("flat", Flatten()), Node("drop", Dropout(p=0.5)), Node("fc", Linear(units=2))])
    params = net.init_params(0)
    x = np.random.default_rng(1).standard_normal((4, 1, 4, 4)).astype(np.float32)
    assert np.array_equal(net.predict(x, params), net.forward(x, params)[0])
    trained = net.forward(x, params, rng=np.random.default_rng(0))[0]
    assert not np.allclose(trained, net.predict(x, params))
