"""Optimizer steps and schedules against updates worked out by hand."""
import math

import numpy as np
import pytest

from training.optim import SGD, Adam, make_optimizer
from training.schedule import cosine, make_schedule, step_decay

G1 = np.array([0.5, 1.0])
G2 = np.array([-1.0, 0.5])


def params():
    return {"fc.W": np.array([1.0, -2.0]), "fc.b": np.array([1.0, -2.0])}


def two_steps(opt, lr):
    p = params()
    opt.step(p, {"fc.W": G1, "fc.b": G1}, lr)
    first = {k: v.copy() for k, v in p.items()}
    opt.step(p, {"fc.W": G2, "fc.b": G2}, lr)
    return first, p


def test_sgd_momentum_matches_hand_computed_steps():
    # v1 = -0.1*G1 = [-0.05, -0.1];  v2 = 0.9*v1 - 0.1*G2 = [0.055, -0.14]
    first, second = two_steps(SGD(momentum=0.9), lr=0.1)
    np.testing.assert_allclose(first["fc.W"], [0.95, -2.1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(second["fc.W"], [1.005, -2.24], rtol=0, atol=1e-12)


def test_sgd_without_momentum_is_plain_gradient_descent():
    first, second = two_steps(SGD(momentum=0.0), lr=0.1)
    np.testing.assert_allclose(second["fc.W"], [1.0 - 0.05 + 0.1, -2.0 - 0.1 - 0.05], atol=1e-12)


def test_nesterov_momentum_matches_hand_computed_step():
    # p += -mu*v_prev + (1+mu)*v; step 1: v_prev=0, v=-0.1*G1 -> p = p + 1.9*v = [0.905, -2.19]
    p = params()
    SGD(momentum=0.9, nesterov=True).step(p, {"fc.W": G1}, 0.1)
    np.testing.assert_allclose(p["fc.W"], [0.905, -2.19], atol=1e-12)


def test_weight_decay_applies_to_weights_not_biases():
    # W sees G1 + 0.1*W = [0.6, 0.8]; b sees G1 only.
    first, _ = two_steps(SGD(momentum=0.9, weight_decay=0.1, decay={"fc.W"}), lr=0.1)
    np.testing.assert_allclose(first["fc.W"], [0.94, -2.08], atol=1e-12)
    np.testing.assert_allclose(first["fc.b"], [0.95, -2.1], atol=1e-12)


def test_adam_matches_hand_computed_steps():
    # Step 1: m_hat = g, v_hat = g^2, so each weight moves by lr * sign(g).
    # Step 2: m = [-0.055, 0.14], v = [0.00124975, 0.001249]; m_hat = m/0.19, v_hat = v/0.001999.
    first, second = two_steps(Adam(beta1=0.9, beta2=0.999, eps=1e-8), lr=0.01)
    np.testing.assert_allclose(first["fc.W"], [0.99, -2.01], atol=1e-9)
    np.testing.assert_allclose(second["fc.W"], [0.99 + 0.003661035224, -2.01 - 0.009321796270], atol=1e-9)


def test_step_keeps_float32_parameters_float32():
    p = {"c.W": np.ones((2, 2), np.float32)}
    Adam().step(p, {"c.W": np.full((2, 2), 0.5, np.float32)}, 0.1)
    assert p["c.W"].dtype == np.float32


def test_bad_gradient_shape_names_the_parameter():
    with pytest.raises(ValueError, match=r"conv1\.W.*\(3,\).*\(2,\)"):
        SGD().step({"conv1.W": np.zeros(3)}, {"conv1.W": np.zeros(2)}, 0.1)


def test_unknown_optimizer_lists_known_ones():
    with pytest.raises(ValueError, match=r"--optimizer.*'rmsprop'.*adam.*sgd"):
        make_optimizer("rmsprop")


def test_step_decay_and_cosine_schedules():
    s = step_decay(0.1, every=10, gamma=0.5)
    assert [s(0), s(9), s(10), s(25)] == [0.1, 0.1, 0.05, 0.025]
    c = cosine(1.0, total=12, warmup=2, min_lr=0.0)
    assert [c(0), c(1)] == [0.5, 1.0]
    assert c(2) == 1.0
    assert math.isclose(c(7), 0.5, abs_tol=1e-12)  # halfway through the 10 cosine steps
    assert math.isclose(c(12), 0.0, abs_tol=1e-12) and math.isclose(c(40), 0.0, abs_tol=1e-12)


def test_make_schedule_rejects_bad_values():
    with pytest.raises(ValueError, match="--schedule.*'linear'"):
        make_schedule("linear", 0.1, 100)
    with pytest.raises(ValueError, match="--lr must be positive, got -1"):
        make_schedule("cosine", -1, 100)
