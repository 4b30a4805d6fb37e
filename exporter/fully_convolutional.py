"""Converting FC layers to CONV layers (the notes' section of that name).

An FC layer with K outputs that looks at a volume D x F x F equals a CONV layer with K filters of
extent F, stride 1, no padding: its weights (D*F*F, K) reshape to (K, D, F, F) because Flatten
reads the volume in (c, h, w) order. Later FC layers see a 1x1 volume and become 1x1 CONVs.
The Flatten nodes disappear, so the converted network accepts larger images and answers with a
map of class scores (classes, H', W'): on the original size a 1x1 map equal to the original
scores; on a larger image the scores of crops one total-stride apart (exactly so only when the
trunk has no zero-padding).
"""
from __future__ import annotations

import numpy as np

from kernels import Conv2d, ShapeError

from .graph import INPUT, Network, Node, Params

ELEMENTWISE = frozenset({"relu", "dropout"})  # layers that take a volume as well as a vector


def to_fully_convolutional(network: Network, params: Params) -> tuple[Network, Params]:
    """The equivalent network without FC layers, and its parameters (FC weights reshaped)."""
    alias: dict[str, str] = {}
    shapes = {INPUT: network.input_shape}
    nodes: list[Node] = []
    out_params: Params = {}
    for node in network.nodes:
        inputs = tuple(alias.get(s, s) for s in node.inputs)
        layer = node.layer
        if layer.kind == "flatten":
            alias[node.name] = inputs[0]
            continue
        if len(network.shapes[node.inputs[0]]) == 1 and layer.kind not in ELEMENTWISE | {"fc"}:
            raise ShapeError(f"node {node.name!r}: a {layer.kind!r} layer on a flat vector has no convolutional form")
        if layer.kind == "fc":
            c, h, w = shapes[inputs[0]]
            if h != w:
                raise ShapeError(f"node {node.name!r}: an FC layer over a non-square {c}x{h}x{w} volume has no square CONV equivalent")
            layer = Conv2d(filters=layer.units, size=h, stride=1, pad=0, bias=layer.bias)
            out_params[f"{node.name}.W"] = np.ascontiguousarray(params[f"{node.name}.W"].T.reshape(layer.filters, c, h, w))
            if layer.bias:
                out_params[f"{node.name}.b"] = params[f"{node.name}.b"]
        else:
            out_params.update({k: v for k, v in params.items() if k.startswith(node.name + ".")})
        shapes[node.name] = tuple(layer.output_shape(shapes[inputs[0]] if layer.arity == 1 else tuple(shapes[s] for s in inputs)))
        nodes.append(Node(node.name, layer, inputs))
    return Network(network.name, network.input_shape, nodes), out_params
