"""Gradient-descent update rules over the flat ``"<node>.<param>"`` parameter dict (cs231n's forms).

Both optimizers apply L2 weight decay as a gradient term ``wd * p`` (the gradient of
``0.5 * wd * ||p||^2`` added to the loss) on the parameters named in ``decay`` only. The trainer
decays the multiplicative weights ``W`` of CONV and FC layers and leaves biases and batch-norm
``gamma``/``beta`` alone: shrinking a bias or a scale does not make the function smoother, it only
shifts or rescales activations. Parameters without a gradient (batch-norm running statistics) are
never touched. Updates are in place, in the parameters' own dtype.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

Params = dict[str, np.ndarray]


class Optimizer:
    """Holds per-parameter state; ``step(params, grads, lr)`` updates ``params`` in place."""

    def __init__(self, weight_decay: float = 0.0, decay: Iterable[str] = ()):
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        self.weight_decay = float(weight_decay)
        self.decay = frozenset(decay)
        self.state: dict[str, dict[str, np.ndarray]] = {}
        self.steps = 0

    def regularized(self, name: str, param: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """The gradient with the L2 term added when ``name`` is decayed."""
        if self.weight_decay and name in self.decay:
            return grad + self.weight_decay * param
        return grad

    def step(self, params: Params, grads: Params, lr: float) -> None:
        self.steps += 1
        for name, grad in grads.items():
            if name not in params:
                raise KeyError(f"gradient for {name!r} has no parameter; parameters: {sorted(params)}")
            param = params[name]
            if grad.shape != param.shape:
                raise ValueError(f"gradient for {name!r}: expected shape {param.shape}, received {grad.shape}")
            g = self.regularized(name, param, grad)
            param -= self.update(name, g, lr).astype(param.dtype, copy=False)

    def update(self, name: str, grad: np.ndarray, lr: float) -> np.ndarray:
        """The amount to subtract from parameter ``name`` given its (regularized) gradient."""
        raise NotImplementedError


class SGD(Optimizer):
    """SGD with (optionally Nesterov) momentum: ``v = mu * v - lr * g; p += v``.

    Nesterov uses the cs231n rewrite: ``p += -mu * v_prev + (1 + mu) * v``.
    """

    def __init__(self, momentum: float = 0.9, nesterov: bool = False, **kw):
        super().__init__(**kw)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def update(self, name: str, grad: np.ndarray, lr: float) -> np.ndarray:
        if not self.momentum:
            return lr * grad
        st = self.state.setdefault(name, {"v": np.zeros_like(grad)})
        v_prev = st["v"]
        v = self.momentum * v_prev - lr * grad
        st["v"] = v
        if self.nesterov:
            return -(-self.momentum * v_prev + (1.0 + self.momentum) * v)
        return -v


class Adam(Optimizer):
    """Adam with bias correction: ``p -= lr * m_hat / (sqrt(v_hat) + eps)``."""

    def __init__(self, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8, **kw):
        super().__init__(**kw)
        for name, beta in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {beta!r}")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)

    def update(self, name: str, grad: np.ndarray, lr: float) -> np.ndarray:
        st = self.state.setdefault(name, {"m": np.zeros_like(grad), "v": np.zeros_like(grad)})
        st["m"] = self.beta1 * st["m"] + (1.0 - self.beta1) * grad
        st["v"] = self.beta2 * st["v"] + (1.0 - self.beta2) * grad * grad
        m_hat = st["m"] / (1.0 - self.beta1 ** self.steps)
        v_hat = st["v"] / (1.0 - self.beta2 ** self.steps)
        return lr * m_hat / (np.sqrt(v_hat) + self.eps)


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def make_optimizer(name: str, weight_decay: float = 0.0, decay: Iterable[str] = (), **kw) -> Optimizer:
    """An optimizer by name (the CLI's ``--optimizer``)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"--optimizer: unknown optimizer {name!r}; expected one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name](weight_decay=weight_decay, decay=decay, **kw)
