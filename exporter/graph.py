"""A ConvNet as a small graph of layers: a sequence, plus branches that meet in Concat or Add.

``Network`` holds the nodes in topological order, works out every node's output shape with the
layers' shape rules, initializes parameters (He) from a seed, and runs the forward and backward
passes through the graph. Parameters live in one flat dict keyed ``"<node>.<param>"``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernels import Layer, ShapeError, layer_from_dict

INPUT = "input"
NODE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
Shape = tuple[int, ...]
Params = dict[str, np.ndarray]


@dataclass(frozen=True)
class Node:
    """One layer of the graph; ``inputs`` name earlier nodes or ``"input"`` (empty: the node before)."""

    name: str
    layer: Layer
    inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))


@dataclass
class Network:
    """A named graph from an input volume ``(C, H, W)`` to the class scores (the last node)."""

    name: str
    input_shape: Shape
    nodes: list[Node]
    shapes: dict[str, Shape] = field(init=False, repr=False)
    _param_shapes: dict[str, Shape] = field(init=False, repr=False)
    _shape_cache: dict[Shape, dict[str, Shape]] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.input_shape = tuple(int(d) for d in self.input_shape)
        self.nodes = [
            node if node.inputs else Node(node.name, node.layer, (self.nodes[i - 1].name if i else INPUT,))
            for i, node in enumerate(self.nodes)
        ]
        if len(self.input_shape) != 3 or min(self.input_shape) <= 0:
            raise ValueError(f"network {self.name!r}: input_shape must be a positive (C, H, W), got {self.input_shape}")
        if not self.nodes:
            raise ValueError(f"network {self.name!r}: needs at least one node")
        self._check_wiring()
        self.shapes = self._infer_shapes(self.input_shape)
        self._param_shapes = {
            f"{node.name}.{p}": tuple(s)
            for node in self.nodes
            for p, s in node.layer.param_shapes(self.node_input_shape(node, self.shapes)).items()
        }

    def _check_wiring(self) -> None:
        seen = {INPUT}
        used: set[str] = set()
        for node in self.nodes:
            if not NODE_NAME.match(node.name) or node.name in seen:
                why = "is used twice" if node.name in seen else f"must match {NODE_NAME.pattern}"
                raise ValueError(f"network {self.name!r}: node name {node.name!r} {why}")
            arity = node.layer.arity
            if (arity and len(node.inputs) != arity) or (not arity and len(node.inputs) < 2):
                want = arity or "two or more"
                raise ValueError(f"network {self.name!r}: node {node.name!r} takes {want} inputs, got {list(node.inputs)}")
            for src in node.inputs:
                if src not in seen:
                    raise ValueError(f"network {self.name!r}: node {node.name!r} reads {src!r}, which is not an earlier node")
            used.update(node.inputs)
            seen.add(node.name)
        dead = [n.name for n in self.nodes[:-1] if n.name not in used]
        if dead:
            raise ValueError(f"network {self.name!r}: the output of node(s) {dead} is never used")

    @staticmethod
    def node_input_shape(node: Node, shapes: dict[str, Shape]) -> Any:
        """The per-sample shape a node receives: one shape, or a tuple of them for merge layers."""
        if node.layer.arity == 1:
            return shapes[node.inputs[0]]
        return tuple(shapes[s] for s in node.inputs)

    def _infer_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        shapes: dict[str, Shape] = {INPUT: tuple(input_shape)}
        for node in self.nodes:
            try:
                shapes[node.name] = tuple(node.layer.output_shape(self.node_input_shape(node, shapes)))
            except ShapeError as e:
                raise ShapeError(f"network {self.name!r}, node {node.name!r}: {e}") from e
        return shapes

    def shapes_for(self, input_shape: Shape) -> dict[str, Shape]:
        """Every node's output shape for another input size, checked against the parameter shapes.

        A fully convolutional network accepts larger inputs; a network with FC layers does not,
        and the error names the first layer whose weights no longer fit.
        """
        input_shape = tuple(int(d) for d in input_shape)
        if input_shape == self.input_shape:
            return self.shapes
        if input_shape not in self._shape_cache:
            shapes = self._infer_shapes(input_shape)
            for node in self.nodes:
                for p, s in node.layer.param_shapes(self.node_input_shape(node, shapes)).items():
                    if tuple(s) != self._param_shapes[f"{node.name}.{p}"]:
                        raise ShapeError(
                            f"network {self.name!r}: input {input_shape} (expected {self.input_shape}) needs "
                            f"{node.name}.{p} of shape {tuple(s)}, but it has {self._param_shapes[f'{node.name}.{p}']}"
                        )
            self._shape_cache[input_shape] = shapes
        return self._shape_cache[input_shape]

    @property
    def output_shape(self) -> Shape:
        return self.shapes[self.nodes[-1].name]

    @property
    def num_classes(self) -> int:
        return self.output_shape[0]

    def param_shapes(self) -> dict[str, Shape]:
        """``"<node>.<param>"`` -> shape, in node order."""
        return dict(self._param_shapes)

    def trainable(self, key: str) -> bool:
        """Whether a parameter is a weight (trained) rather than state such as batch-norm statistics."""
        node_name, param = key.rsplit(".", 1)
        return param not in self.node(node_name).layer.non_trainable

    def num_params(self, trainable_only: bool = True) -> int:
        return sum(int(np.prod(s)) for k, s in self._param_shapes.items() if not trainable_only or self.trainable(k))

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"network {self.name!r} has no node {name!r}")

    def init_params(self, seed: int = 0, dtype: Any = np.float32) -> Params:
        """He initialization from ``seed``: weights ~ N(0, 2/fan_in), biases 0, batch norm the identity.

        Deterministic: the same seed and graph give the same arrays on every machine.
        """
        rng = np.random.default_rng(seed)
        params: Params = {}
        for key, shape in self._param_shapes.items():
            node_name, name = key.rsplit(".", 1)
            kind = self.node(node_name).layer.kind
            if name == "W":
                fan_in = shape[0] if kind == "fc" else int(np.prod(shape[1:]))
                w = rng.standard_normal(shape, dtype=np.float32)
                w *= np.float32(np.sqrt(2.0 / fan_in))
                params[key] = w.astype(dtype, copy=False)
            elif name in ("b", "beta", "mean"):
                params[key] = np.zeros(shape, dtype=dtype)
            elif name in ("gamma", "var"):
                params[key] = np.ones(shape, dtype=dtype)
            else:
                raise ValueError(f"network {self.name!r}: no initialization rule for parameter {key!r}")
        return params

    def check_params(self, params: Params) -> None:
        """Raise a ValueError naming the first missing, extra or mis-shaped parameter."""
        for key, shape in self._param_shapes.items():
            if key not in params:
                raise ValueError(f"network {self.name!r}: missing parameter {key!r} of shape {shape}")
            if tuple(np.shape(params[key])) != shape:
                raise ValueError(f"network {self.name!r}: parameter {key!r} must have shape {shape}, got {np.shape(params[key])}")
        extra = sorted(set(params) - set(self._param_shapes))
        if extra:
            raise ValueError(f"network {self.name!r}: unexpected parameter(s) {extra}")

    def _node_params(self, params: Params, node: Node) -> Params:
        prefix = node.name + "."
        return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}

    def _check_batch(self, x: np.ndarray) -> None:
        if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[1] != self.input_shape[0]:
            got = getattr(x, "shape", type(x).__name__)
            raise ShapeError(f"network {self.name!r}: expected input of shape (N, {', '.join(map(str, self.input_shape))}), got {got}")
        self.shapes_for(x.shape[1:])

    def _run(self, x: np.ndarray, params: Params, rng: np.random.Generator | None, keep: bool):
        self._check_batch(x)
        consumers: dict[str, int] = {}
        for node in self.nodes:
            for src in node.inputs:
                consumers[src] = consumers.get(src, 0) + 1
        values: dict[str, Any] = {INPUT: x}
        caches: dict[str, Any] = {}
        for node in self.nodes:
            args = [values[s] for s in node.inputs]
            out, cache = node.layer.forward(args[0] if node.layer.arity == 1 else args, self._node_params(params, node), rng)
            if keep:
                caches[node.name] = cache
            values[node.name] = out
            for src in node.inputs:
                consumers[src] -= 1
                if consumers[src] == 0:
                    del values[src]
        return values[self.nodes[-1].name], caches

    def forward(self, x: np.ndarray, params: Params, rng: np.random.Generator | None = None) -> tuple[np.ndarray, dict]:
        """Scores for an (N, C, H, W) batch and the per-node caches ``backward`` needs.

        ``rng=None`` is inference; an rng puts dropout in training mode.
        """
        return self._run(x, params, rng, keep=True)

    def predict(self, x: np.ndarray, params: Params) -> np.ndarray:
        """Inference scores, dropping each layer's cache as soon as it is made (less memory)."""
        return self._run(x, params, None, keep=False)[0]

    def backward(self, dscores: np.ndarray, caches: dict, with_input: bool = False):
        """Gradients of every trainable parameter (``"<node>.<param>"``) from the scores' gradient.

        Walks the nodes in reverse; a node read by several consumers (a branch point) receives the
        sum of their gradients. With ``with_input`` also returns the gradient on the input batch.
        """
        grads: dict[str, np.ndarray] = {self.nodes[-1].name: dscores}
        dparams: Params = {}
        for node in reversed(self.nodes):
            dout = grads.pop(node.name)
            dx, dp = node.layer.backward(dout, caches[node.name])
            for p, g in dp.items():
                dparams[f"{node.name}.{p}"] = g
            for src, g in zip(node.inputs, [dx] if node.layer.arity == 1 else dx):
                grads[src] = grads[src] + g if src in grads else g
        return (dparams, grads[INPUT]) if with_input else dparams

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (graph.json): enough to rebuild the network exactly."""
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "nodes": [{"name": n.name, "layer": n.layer.to_dict(), "inputs": list(n.inputs)} for n in self.nodes],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Network":
        try:
            nodes = [Node(n["name"], layer_from_dict(n["layer"]), tuple(n["inputs"])) for n in d["nodes"]]
            return cls(d["name"], tuple(d["input_shape"]), nodes)
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a network description: {e!r}") from e


class GraphBuilder:
    """Appends nodes for hand-written graphs (inception modules, residual blocks); returns node names."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []

    def add(self, name: str, layer: Layer, *inputs: str) -> str:
        """Append a node reading ``inputs`` (default: the node added before); returns its name."""
        self.nodes.append(Node(name, layer, inputs))
        return name
