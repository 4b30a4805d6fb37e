"""Network + parameters -> a checked ONNX model: input ``input`` [N, C, H, W], output ``scores``.

The batch dimension is dynamic ("batch"); a fully convolutional network also has dynamic height
and width and outputs a map of scores [N, classes, H', W']. Every export passes
``onnx.checker.check_model(full_check=True)`` and strict shape inference, and the inferred shape
of every tensor must equal the one the layers' shape rules give.
"""
from __future__ import annotations

import json

import onnx
from onnx import TensorProto, helper

from . import EXPORTER_VERSION
from .emitters import EMITTERS, EmitContext
from .graph import INPUT, Network, Params

OPSET = 17
OUTPUT = "scores"


class ExportError(ValueError):
    """A network the exporter cannot write, or an ONNX model that fails its checks."""


def _value_info(name: str, dims: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def build_model(network: Network, params: Params, metadata: dict[str, object] | None = None,
                fully_convolutional: bool = False) -> onnx.ModelProto:
    """Emit every node through ``EMITTERS``; ``metadata`` goes into metadata_props (JSON for non-strings)."""
    network.check_params(params)
    ctx = EmitContext(params, network.shapes)
    last = network.nodes[-1].name
    for node in network.nodes:
        emitter = EMITTERS.get(node.layer.kind)
        if emitter is None:
            raise ExportError(f"node {node.name!r}: no ONNX emitter for layer kind {node.layer.kind!r}; known: {sorted(EMITTERS)}")
        emitter(ctx, node, list(node.inputs), OUTPUT if node.name == last else node.name)
    c, h, w = network.input_shape
    out = network.output_shape
    if fully_convolutional:
        if len(out) != 3:
            raise ExportError(f"network {network.name!r}: a fully convolutional export needs a (classes, H, W) output, got {out}")
        in_dims, out_dims = ["batch", c, "height", "width"], ["batch", out[0], "out_height", "out_width"]
    else:
        if len(out) != 1:
            raise ExportError(f"network {network.name!r}: scores must be a (classes,) vector, got {out}")
        in_dims, out_dims = ["batch", c, h, w], ["batch", out[0]]
    graph = helper.make_graph(ctx.nodes, network.name, [_value_info(INPUT, in_dims)], [_value_info(OUTPUT, out_dims)],
                              initializer=ctx.initializers)
    opsets = [helper.make_opsetid("", OPSET)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="convnet-serve exporter",
                              producer_version=EXPORTER_VERSION, ir_version=helper.find_min_ir_version_for(opsets))
    model.doc_string = f"{network.name}: class scores (pre-softmax) for an NCHW float32 batch"
    props = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    props.setdefault("exporter_version", EXPORTER_VERSION)
    helper.set_model_props(model, props)
    return model


def export_onnx(network: Network, params: Params, metadata: dict[str, object] | None = None,
                fully_convolutional: bool = False) -> bytes:
    """The checked, serialized ONNX model (serialized once: large nets take seconds per pass)."""
    model = build_model(network, params, metadata, fully_convolutional)
    data = model.SerializeToString()
    check_export(data, model, network)
    return data


def check_export(data: bytes, model: onnx.ModelProto, network: Network) -> None:
    """The ONNX checker with full check on the serialized model, then strict shape inference on its
    structure at the network's input size: every tensor's inferred shape must equal the layer rules'."""
    weights = [_value_info(t.name, list(t.dims)) for t in model.graph.initializer]
    c, h, w = network.input_shape
    structure = helper.make_model(
        helper.make_graph(model.graph.node, network.name, [_value_info(INPUT, ["batch", c, h, w]), *weights], []),
        opset_imports=model.opset_import, ir_version=model.ir_version)
    try:
        onnx.checker.check_model(data, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(structure, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"network {network.name!r}: the ONNX model fails its checks: {e}") from e
    found = {vi.name: vi for vi in inferred.graph.value_info}
    for node in network.nodes:
        tensor = OUTPUT if node is network.nodes[-1] else node.name
        if tensor not in found:
            raise ExportError(f"network {network.name!r}, node {node.name!r}: ONNX shape inference found no shape")
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in found[tensor].type.tensor_type.shape.dim]
        if dims != ["batch", *network.shapes[node.name]]:
            raise ExportError(f"network {network.name!r}, node {node.name!r}: ONNX infers shape {dims}, "
                              f"the layer rules give {['batch', *network.shapes[node.name]]}")
