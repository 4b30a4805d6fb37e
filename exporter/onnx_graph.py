"""A user's ONNX model read for import: checked, its constant tensors evaluated, its data path found.

A tensor is *constant* when it does not depend on the input's values: initializers, Constant
nodes, Shape (which reads only the shape) and anything computed from those alone (torch's
Shape -> Gather -> Unsqueeze -> Concat chains feeding Reshape, the bounds of a channel split).
One onnxruntime run of a seeded probe batch gives every constant's value and every data tensor's
shape, so the importer maps each data node from known shapes and values instead of re-implementing
ONNX's shape arithmetic.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

PROBE_BATCH = 2
"""The probe runs two images, so a Reshape that fixes the batch size shows itself."""


class ImportRefused(ValueError):
    """A model the import cannot express: names the op type, the node and what is unsupported."""


def refuse(node: onnx.NodeProto, why: str) -> ImportRefused:
    return ImportRefused(f"{node.op_type} node {node.name or node.output[0]!r}: {why}")


@dataclass
class OnnxGraph:
    """The parsed model: its one input and output, the data nodes in order, constants and shapes."""

    model: onnx.ModelProto
    input_name: str
    output_name: str
    input_shape: tuple[int, int, int]
    data_nodes: list[onnx.NodeProto]
    constants: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]]
    """Per-sample shape (no batch axis) of every data tensor, from the probe."""
    consumers: dict[str, list[onnx.NodeProto]]

    @property
    def opset(self) -> int:
        return next((o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")), 0)

    def attrs(self, node: onnx.NodeProto) -> dict:
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def constant(self, node: onnx.NodeProto, index: int, what: str) -> np.ndarray | None:
        """The value of a node's ``index``-th input (None when it is absent); refused when it is data."""
        if index >= len(node.input) or not node.input[index]:
            return None
        name = node.input[index]
        if name not in self.constants:
            raise refuse(node, f"its {what} ({name!r}) must be a constant, not computed from the input")
        return self.constants[name]

    def is_constant(self, name: str) -> bool:
        return name in self.constants


def _dims(value_info: onnx.ValueInfoProto) -> list:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in value_info.type.tensor_type.shape.dim]


def _structure(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model without its weights' data (initializers become typed graph inputs): what shape
    inference needs, without copying hundreds of megabytes."""
    weights = [onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in model.graph.initializer]
    declared = {i.name for i in model.graph.input}
    graph = onnx.helper.make_graph(model.graph.node, model.graph.name,
                                   [*model.graph.input, *(w for w in weights if w.name not in declared)], model.graph.output)
    return onnx.helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)


def _check(model: onnx.ModelProto, data: bytes) -> tuple[onnx.ValueInfoProto, onnx.ValueInfoProto]:
    """The ONNX checker (on the serialized ``data``: a large model is not serialized again) and strict
    shape inference, then one float NCHW input and one output."""
    try:
        onnx.checker.check_model(data)
        onnx.shape_inference.infer_shapes(_structure(model), check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ImportRefused(f"the ONNX model fails its checks: {' '.join(str(e).split())}") from e
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise ImportRefused(f"the graph has inputs {[i.name for i in inputs]} and outputs "
                            f"{[o.name for o in model.graph.output]}; the import takes one image input and one score output")
    graph_input = inputs[0]
    dims = _dims(graph_input)
    if graph_input.type.tensor_type.elem_type != onnx.TensorProto.FLOAT or len(dims) != 4:
        raise ImportRefused(f"input {graph_input.name!r}: expected a float32 (N, C, H, W) image batch, got "
                            f"{onnx.TensorProto.DataType.Name(graph_input.type.tensor_type.elem_type)} of shape {dims}")
    if not all(isinstance(d, int) and d > 0 for d in dims[1:]):
        raise ImportRefused(f"input {graph_input.name!r}: C, H and W must be fixed sizes, got {dims}")
    if isinstance(dims[0], int):
        raise ImportRefused(f"input {graph_input.name!r}: the batch axis is fixed at {dims[0]}; export with a dynamic "
                            "batch axis (torch.onnx.export(..., dynamic_axes={'input': {0: 'batch'}, 'scores': {0: 'batch'}}))")
    return graph_input, model.graph.output[0]


def _needed(model: onnx.ModelProto, output: str) -> list[onnx.NodeProto]:
    """The nodes the output depends on, in graph (topological) order."""
    producer = {o: n for n in model.graph.node for o in n.output}
    wanted, stack = set(), [output]
    while stack:
        name = stack.pop()
        node = producer.get(name)
        if node is not None and id(node) not in wanted:
            wanted.add(id(node))
            stack.extend(i for i in node.input if i)
    return [n for n in model.graph.node if id(n) in wanted]


def _probe(model: onnx.ModelProto, input_name: str, input_shape: tuple[int, ...], outputs: list[str]) -> dict[str, np.ndarray]:
    """Every listed tensor's value for a seeded probe batch, from onnxruntime with no graph rewrites.

    The tensors become extra graph outputs for the one serialization, and are taken off again (a
    copy of a large model would cost seconds)."""
    known = {o.name for o in model.graph.output}
    count = len(model.graph.output)
    model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in outputs if name not in known)
    try:
        probe = model.SerializeToString()
    finally:
        del model.graph.output[count:]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(probe, options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((PROBE_BATCH, *input_shape)).astype(np.float32)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {input_name: x})))


def read_graph(model: onnx.ModelProto, known_ops: frozenset[str], data: bytes | None = None) -> OnnxGraph:
    """Check ``model`` (``data``: its serialized form, if at hand), find its constants and data nodes,
    refuse any data op outside ``known_ops``, and probe it once for the constants' values and the
    data tensors' shapes."""
    graph_input, graph_output = _check(model, model.SerializeToString() if data is None else data)
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    nodes = _needed(model, graph_output.name)
    data = {graph_input.name}
    data_nodes, computed = [], []
    for node in nodes:
        if node.op_type == "Constant":
            computed.extend(node.output)
        elif node.op_type != "Shape" and any(i in data for i in node.input if i):
            data_nodes.append(node)
            data.update(node.output)
        else:
            computed.extend(o for o in node.output if o not in constants)
    unknown = [n for n in data_nodes if n.op_type not in known_ops or n.domain not in ("", "ai.onnx")]
    if unknown:
        others = sorted({n.op_type for n in unknown[1:]} - {unknown[0].op_type})
        more = f" (also unsupported: {', '.join(others)})" if others else ""
        raise refuse(unknown[0], f"the op is not supported by the NumPy kernels{more}; supported ops: {', '.join(sorted(known_ops))}")
    input_shape = tuple(int(d) for d in _dims(graph_input)[1:])
    data_tensors = [o for n in data_nodes for o in n.output if o]
    values = _probe(model, graph_input.name, input_shape, computed + data_tensors)
    constants.update((name, values[name]) for name in computed)
    shapes = {graph_input.name: input_shape}
    for name in data_tensors:
        shape = values[name].shape
        if not shape or shape[0] != PROBE_BATCH:
            producer = next(n for n in data_nodes if name in n.output)
            raise refuse(producer, f"its output {name!r} has shape {shape} for a batch of {PROBE_BATCH}: "
                                   "the batch axis must stay first and unchanged")
        shapes[name] = tuple(shape[1:])
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in data_nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return OnnxGraph(model, graph_input.name, graph_output.name, input_shape, data_nodes, constants, shapes, consumers)
