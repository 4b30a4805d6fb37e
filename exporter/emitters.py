"""One ONNX emitter per layer kind, found through one table (``EMITTERS``, keyed by ``layer.kind``).

An emitter appends the standard ONNX operator(s) that compute its layer, reading the node's
input tensor names and writing its output name; weights become initializers named like the
parameters (``"<node>.<param>"``), so the ONNX file and weights.npz share their keys. Other
constants (clip bounds, slice ranges, a shuffle's permutation) are ``Constant`` nodes, and a
layer written as several operators names its intermediate tensors ``"<node>/<what>"`` (node names
never contain a slash, so they cannot collide).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

from .graph import Network, Node, Params, Shape


@dataclass
class EmitContext:
    """The graph being written: its operator nodes, its initializers, the weights they come from and
    the per-sample output shape of every node (for emitters that need a channel count)."""

    params: Params
    shapes: dict[str, Shape] = field(default_factory=dict)
    nodes: list[NodeProto] = field(default_factory=list)
    initializers: list[TensorProto] = field(default_factory=list)

    def input_shape(self, node: Node):
        return Network.node_input_shape(node, self.shapes)

    def constant(self, node: Node, what: str, value: np.ndarray) -> str:
        name = f"{node.name}/{what}"
        self.nodes.append(helper.make_node("Constant", [], [name], name=name, value=numpy_helper.from_array(value, name)))
        return name

    def step(self, op_type: str, inputs: list[str], node: Node, what: str, **attrs) -> str:
        """An intermediate operator of a several-operator layer; returns its output tensor's name."""
        name = f"{node.name}/{what}"
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name

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
    ctx.op("MaxPool", inputs, output, node, kernel_shape=[layer.size] * 2, strides=[layer.step] * 2, pads=list(layer.pads),
           ceil_mode=int(layer.rounding == "ceil"))


def emit_avgpool(ctx: EmitContext, node: Node, inputs: list[str], output: str) -> None:
    layer = node.layer
    ctx.op("AveragePool", inputs, output, node, kernel_shape=[layer.size] * 2, strides=[layer.step] * 2,
           pads=list(layer.pads), ceil_mode=int(layer.rounding == "ceil"), count_include_pad=int(layer.count_include_pad))


def emit_globalavgpool(ctx: EmitContext, node: Node, inputs: list[str], output: str) -> None:
    if node.layer.keepdims:
        ctx.op("GlobalAveragePool", inputs, output, node)
    else:
        ctx.op("ReduceMean", inputs, output, node, axes=[2, 3], keepdims=0)


def emit_globalmaxpool(ctx: EmitContext, node: Node, inputs: list[str], output: str) -> None:
    if node.layer.keepdims:
        ctx.op("GlobalMaxPool", inputs, output, node)
    else:
        ctx.op("ReduceMax", inputs, output, node, axes=[2, 3], keepdims=0)


def emit_relu(ctx: EmitContext, node: Node, inputs: list[str], output: str) -> None:
    ctx.op("Relu", inputs, output, node)


def emit_clip(ctx: EmitContext, node: Node, inputs: list[str], output: str) -> None:
    """Clip's bounds are optional inputs (opset 11 on); an absent bound is the empty name."""
    bounds = [ctx.constant(node, what, np.array(v, dtype=np.float32)) if v is not None else ""
              for what, v in (("min", node.layer.min), ("max", node.layer.max))]
    ctx.op("Clip", [inputs[0], *bounds], output, node)


def emit_leakyrelu(ctx: EmitContext, node: Node, inputs: list[str], output: str) -> None:
    ctx.op("LeakyRelu", inputs, output, node, alpha=node.layer.alpha)


def emit_sigmoid(ctx: EmitContext, node: Node, inputs: list[str], output: str) -> None:
    ctx.op("Sigmoid", inputs, output, node)


def emit_hardsigmoid(ctx: EmitContext, node: Node, inputs: list[str], output: str) -> None:
    ctx.op("HardSigmoid", inputs, output, node, alpha=node.layer.alpha, beta=node.layer.beta)


def emit_hardswish(ctx: EmitContext, node: Node, inputs: list[str], output: str) -> None:
    ctx.op("HardSwish", inputs, output, node)


def emit_silu(ctx: EmitContext, node: Node, inputs: list[str], output: str) -> None:
    """x * Sigmoid(x): ONNX has no SiLU operator (torch.onnx writes the same pair)."""
    ctx.op("Mul", [inputs[0], ctx.step("Sigmoid", inputs, node, "sigmoid")], output, node)


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


def emit_mul(ctx: EmitContext, node: Node, inputs: list[str], output: str) -> None:
    ctx.op("Mul", inputs, output, node)


def emit_channelshuffle(ctx: EmitContext, node: Node, inputs: list[str], output: str) -> None:
    """The shuffle as the channel permutation it is: one Gather along axis 1 (any height and width)."""
    perm = node.layer.permutation(ctx.input_shape(node)[0]).astype(np.int64)
    ctx.op("Gather", [inputs[0], ctx.constant(node, "permutation", perm)], output, node, axis=1)


def emit_channelslice(ctx: EmitContext, node: Node, inputs: list[str], output: str) -> None:
    ranges = [ctx.constant(node, what, np.array([v], dtype=np.int64))
              for what, v in (("starts", node.layer.start), ("ends", node.layer.stop), ("axes", 1))]
    ctx.op("Slice", [inputs[0], *ranges], output, node)


def emit_softmax(ctx: EmitContext, node: Node, inputs: list[str], output: str) -> None:
    ctx.op("Softmax", inputs, output, node, axis=1)


EMITTERS: dict[str, Emitter] = {
    "conv": emit_conv,
    "maxpool": emit_maxpool,
    "avgpool": emit_avgpool,
    "globalavgpool": emit_globalavgpool,
    "globalmaxpool": emit_globalmaxpool,
    "relu": emit_relu,
    "clip": emit_clip,
    "leakyrelu": emit_leakyrelu,
    "sigmoid": emit_sigmoid,
    "hardsigmoid": emit_hardsigmoid,
    "hardswish": emit_hardswish,
    "silu": emit_silu,
    "dropout": emit_dropout,
    "lrn": emit_lrn,
    "batchnorm": emit_batchnorm,
    "fc": emit_fc,
    "flatten": emit_flatten,
    "concat": emit_concat,
    "add": emit_add,
    "mul": emit_mul,
    "channelshuffle": emit_channelshuffle,
    "channelslice": emit_channelslice,
    "softmax": emit_softmax,
}
