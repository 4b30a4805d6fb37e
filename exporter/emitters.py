"""One ONNX emitter per layer kind, found through one table (``EMITTERS``, keyed by ``layer.kind``).

An emitter appends the standard ONNX operator(s) that compute its layer, reading the node's
input tensor names and writing its output name; weights become initializers named like the
parameters (``"<node>.<param>"``), so the ONNX file and weights.npz share their keys.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

from .graph import Node, Params


@dataclass
class EmitContext:
    """The graph being written: its operator nodes, its initializers and the weights they come from."""

    params: Params
    nodes: list[NodeProto] = field(default_factory=list)
    initializers: list[TensorProto] = field(default_factory=list)

    def weight(self, node: Node, param: str) -> str:
        key = f"{node.name}.{param}"
        self.initializers.append(numpy_helper.from_array(np.asarray(self.params[key], dtype=np.float32), key))
        return key

    def op(self, op_type: str, inputs: list[str], output: str, node: Node, **attrs) -> None:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=node.name, **attrs))


Emitter = Callable[[EmitContext, Node, list[str], str], None]


def emit_conv(ctx: EmitContext, node: Node, inputs: list[str], output: str) -> None:
    layer = node.layer
    args = [inputs[0], ctx.weight(node, "W")] + ([ctx.weight(node, "b")] if layer.bias else [])
    ctx.op("Conv", args, output, node, kernel_shape=[layer.size] * 2, strides=[layer.stride] * 2,
           pads=list(layer.pads), dilations=[layer.dilation] * 2, group=layer.groups)


def emit_maxpool(ctx: EmitContext, node: Node, inputs: list[str], output: str) -> None:
    layer = node.layer
    ctx.op("MaxPool", inputs, output, node, kernel_shape=[layer.size] * 2, strides=[layer.step] * 2, pads=list(layer.pads))


def emit_avgpool(ctx: EmitContext, node: Node, inputs: list[str], output: str) -> None:
    layer = node.layer
    ctx.op("AveragePool", inputs, output, node, kernel_shape=[layer.size] * 2, strides=[layer.step] * 2,
           pads=list(layer.pads), count_include_pad=0)


def emit_globalavgpool(ctx: EmitContext, node: Node, inputs: list[str], output: str) -> None:
    ctx.op("GlobalAveragePool", inputs, output, node)


def emit_relu(ctx: EmitContext, node: Node, inputs: list[str], output: str) -> None:
    ctx.op("Relu", inputs, output, node)


def emit_dropout(ctx: EmitContext, node: Node, inputs: list[str], output: str) -> None:
    """The exported graph is for inference, where dropout is the identity."""
    ctx.op("Identity", inputs, output, node)


def emit_lrn(ctx: EmitContext, node: Node, inputs: list[str], output: str) -> None:
    layer = node.layer
    ctx.op("LRN", inputs, output, node, size=layer.size, alpha=layer.alpha, beta=layer.beta, bias=layer.k)


def emit_batchnorm(ctx: EmitContext, node: Node, inputs: list[str], output: str) -> None:
    args = [inputs[0]] + [ctx.weight(node, p) for p in ("gamma", "beta", "mean", "var")]
    ctx.op("BatchNormalization", args, output, node, epsilon=node.layer.eps)


def emit_fc(ctx: EmitContext, node: Node, inputs: list[str], output: str) -> None:
    if node.layer.bias:
        ctx.op("Gemm", [inputs[0], ctx.weight(node, "W"), ctx.weight(node, "b")], output, node)
    else:
        ctx.op("MatMul", [inputs[0], ctx.weight(node, "W")], output, node)


def emit_flatten(ctx: EmitContext, node: Node, inputs: list[str], output: str) -> None:
    ctx.op("Flatten", inputs, output, node, axis=1)


def emit_concat(ctx: EmitContext, node: Node, inputs: list[str], output: str) -> None:
    ctx.op("Concat", inputs, output, node, axis=1)


def emit_add(ctx: EmitContext, node: Node, inputs: list[str], output: str) -> None:
    ctx.op("Add", inputs, output, node)


def emit_softmax(ctx: EmitContext, node: Node, inputs: list[str], output: str) -> None:
    ctx.op("Softmax", inputs, output, node, axis=1)


EMITTERS: dict[str, Emitter] = {
    "conv": emit_conv,
    "maxpool": emit_maxpool,
    "avgpool": emit_avgpool,
    "globalavgpool": emit_globalavgpool,
    "relu": emit_relu,
    "dropout": emit_dropout,
    "lrn": emit_lrn,
    "batchnorm": emit_batchnorm,
    "fc": emit_fc,
    "flatten": emit_flatten,
    "concat": emit_concat,
    "add": emit_add,
    "softmax": emit_softmax,
}
