"""ONNX graph -> Network: each data node of a user's model mapped onto the NumPy layers.

One handler per ONNX op type (``HANDLERS``); a handler reads the node's attributes and constant
inputs, and adds layer nodes with their parameters, or makes its output another name for its input
(Identity, Dropout). A few multi-node patterns become one layer: x * Sigmoid(x) is SiLU, and
Reshape -> Transpose -> Reshape over (groups, C/groups) is a channel shuffle. Anything a handler
cannot express is refused naming the op type, the node and the reason. Every layer's output shape
is then checked against the shape onnxruntime gave the same tensor.
"""
from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import onnx

from kernels import (Add, AvgPool2d, BatchNorm, ChannelShuffle, ChannelSlice, Clip, Concat, Conv2d, Flatten,
                     GlobalAvgPool, GlobalMaxPool, HardSigmoid, HardSwish, Layer, LeakyReLU, Linear, MaxPool2d, Mul,
                     ReLU, Sigmoid, SiLU, Softmax)

from .graph import INPUT, Network, Node, Params
from .onnx_graph import ImportRefused, OnnxGraph, read_graph, refuse


class Mapper:
    """The Network under construction: its nodes, parameters, and which node holds each ONNX tensor."""

    def __init__(self, graph: OnnxGraph):
        self.graph = graph
        self.nodes: list[Node] = []
        self.params: Params = {}
        self.holder: dict[str, str] = {graph.input_name: INPUT}
        self.made_by: dict[str, str] = {}
        self.skip: set[int] = set()

    def source(self, onnx_node: onnx.NodeProto, index: int = 0) -> str:
        name = onnx_node.input[index]
        if name not in self.holder:
            raise refuse(onnx_node, f"input {name!r} is not produced by a supported data node")
        return self.holder[name]

    def shape(self, onnx_node: onnx.NodeProto, index: int = 0) -> tuple[int, ...]:
        return self.graph.shapes[onnx_node.input[index]]

    def _unique(self, onnx_node: onnx.NodeProto, suffix: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_-]+", "_", (onnx_node.name or onnx_node.output[0]).strip("/")).strip("_")
        base = base if re.match(r"^[A-Za-z_]", base) else f"{onnx_node.op_type.lower()}_{base}".rstrip("_")
        name, taken, i = base + suffix, {n.name for n in self.nodes} | {INPUT}, 1
        while name in taken:
            i += 1
            name = f"{base}{suffix}_{i}"
        return name

    def add(self, onnx_node: onnx.NodeProto, layer: Layer, inputs: list[str], params: dict[str, np.ndarray] | None = None,
            output: str | None = None, suffix: str = "") -> str:
        """Append a layer node holding ``output`` (default: the ONNX node's first output)."""
        name = self._unique(onnx_node, suffix)
        self.nodes.append(Node(name, layer, tuple(inputs)))
        for key, value in (params or {}).items():
            self.params[f"{name}.{key}"] = np.ascontiguousarray(value, dtype=np.float32)
        tensor = onnx_node.output[0] if output is None else output
        self.holder[tensor] = name
        self.made_by[name] = tensor
        return name

    def alias(self, tensor: str, source: str) -> None:
        self.holder[tensor] = source


Handler = Callable[[Mapper, onnx.NodeProto], None]


def _square(node: onnx.NodeProto, what: str, values: list[int]) -> int:
    if len(values) != 2 or values[0] != values[1]:
        raise refuse(node, f"{what} {list(values)}: the NumPy kernels take the same value along height and width")
    return int(values[0])


def _pads(node: onnx.NodeProto, attrs: dict, in_shape: tuple[int, ...], size: int, stride: int, dilation: int) -> tuple[int, ...]:
    """(top, left, bottom, right) from ``pads`` or ``auto_pad`` (SAME_UPPER/SAME_LOWER/VALID)."""
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("NOTSET", ""):
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        if len(pads) != 4:
            raise refuse(node, f"pads {pads}: expected 4 values for a 2-D window")
        return tuple(int(p) for p in pads)
    if auto == "VALID":
        return (0, 0, 0, 0)
    begin, end = [], []
    for n in in_shape[1:]:
        total = max((-(-n // stride) - 1) * stride + dilation * (size - 1) + 1 - n, 0)
        small, large = total // 2, total - total // 2
        begin.append(small if auto == "SAME_UPPER" else large)
        end.append(large if auto == "SAME_UPPER" else small)
    return (begin[0], begin[1], end[0], end[1])


def _rounding(ceil: bool) -> str:
    """ONNX windows that do not fit exactly round down, or up with ``ceil_mode``."""
    return "ceil" if ceil else "floor"


def _volume(m: Mapper, node: onnx.NodeProto) -> tuple[int, ...]:
    shape = m.shape(node)
    if len(shape) != 3:
        raise refuse(node, f"expected a (N, C, H, W) input, got per-image shape {shape}")
    return shape


def conv(m: Mapper, node: onnx.NodeProto) -> None:
    attrs = m.graph.attrs(node)
    in_shape = _volume(m, node)
    w = m.graph.constant(node, 1, "weight")
    b = m.graph.constant(node, 2, "bias")
    if w.ndim != 4:
        raise refuse(node, f"weight of shape {w.shape}: only 2-D convolutions are supported")
    size = _square(node, "kernel", list(attrs.get("kernel_shape", w.shape[2:])))
    stride = _square(node, "strides", list(attrs.get("strides", [1, 1])))
    dilation = _square(node, "dilations", list(attrs.get("dilations", [1, 1])))
    pads = _pads(node, attrs, in_shape, size, stride, dilation)
    layer = Conv2d(filters=int(w.shape[0]), size=size, stride=stride, pad=pads, dilation=dilation,
                   groups=int(attrs.get("group", 1)), bias=b is not None, rounding=_rounding(False))
    m.add(node, layer, [m.source(node)], {"W": w, **({"b": b} if b is not None else {})})


def _pool(cls: type[Layer]) -> Handler:
    def handler(m: Mapper, node: onnx.NodeProto) -> None:
        attrs = m.graph.attrs(node)
        in_shape = _volume(m, node)
        if len(node.output) > 1 and node.output[1]:
            raise refuse(node, "the Indices output is not supported")
        size = _square(node, "kernel_shape", list(attrs["kernel_shape"]))
        stride = _square(node, "strides", list(attrs.get("strides", [1, 1])))
        if _square(node, "dilations", list(attrs.get("dilations", [1, 1]))) != 1:
            raise refuse(node, "dilated pooling is not supported")
        extra = {"count_include_pad": bool(attrs.get("count_include_pad", 0))} if cls is AvgPool2d else {}
        layer = cls(size=size, stride=stride, pad=_pads(node, attrs, in_shape, size, stride, 1),
                    rounding=_rounding(bool(attrs.get("ceil_mode", 0))), **extra)
        m.add(node, layer, [m.source(node)])
    return handler


def _global(cls: type[Layer]) -> Handler:
    def handler(m: Mapper, node: onnx.NodeProto) -> None:
        _volume(m, node)
        m.add(node, cls(keepdims=True), [m.source(node)])
    return handler


def _reduce(cls: type[Layer]) -> Handler:
    """ReduceMean/ReduceMax over H and W (axes an attribute, or from opset 18 an input)."""
    def handler(m: Mapper, node: onnx.NodeProto) -> None:
        attrs = m.graph.attrs(node)
        _volume(m, node)
        axes = attrs.get("axes")
        if axes is None:
            axes = m.graph.constant(node, 1, "axes")
        axes = sorted(int(a) % 4 for a in (axes if axes is not None else []))
        if axes != [2, 3]:
            raise refuse(node, f"axes {axes}: only the reduction over height and width (axes [2, 3]) is supported")
        m.add(node, cls(keepdims=bool(attrs.get("keepdims", 1))), [m.source(node)])
    return handler


def batchnorm(m: Mapper, node: onnx.NodeProto) -> None:
    attrs = m.graph.attrs(node)
    if attrs.get("training_mode", 0):
        raise refuse(node, "training_mode=1: only inference batch normalization is supported")
    if len(m.shape(node)) != 3:
        raise refuse(node, f"per-image shape {m.shape(node)}: batch normalization is supported on (C, H, W) volumes")
    values = {p: m.graph.constant(node, i, p) for i, p in enumerate(("gamma", "beta", "mean", "var"), start=1)}
    m.add(node, BatchNorm(eps=float(attrs.get("epsilon", 1e-5))), [m.source(node)], values)


def _flat(m: Mapper, node: onnx.NodeProto) -> None:
    """Flatten to (D,) in row-major order; a vector already flat is passed through."""
    if len(m.shape(node)) == 1:
        m.alias(node.output[0], m.source(node))
    else:
        m.add(node, Flatten(), [m.source(node)])


def flatten(m: Mapper, node: onnx.NodeProto) -> None:
    if m.graph.attrs(node).get("axis", 1) != 1:
        raise refuse(node, f"axis {m.graph.attrs(node)['axis']}: only Flatten(axis=1) keeps the batch axis apart")
    _flat(m, node)


def gemm(m: Mapper, node: onnx.NodeProto) -> None:
    attrs = m.graph.attrs(node)
    if attrs.get("transA", 0) or len(m.shape(node)) != 1:
        raise refuse(node, f"input of per-image shape {m.shape(node)} (transA={attrs.get('transA', 0)}): "
                           "a fully connected layer takes flat (N, D) input")
    w = m.graph.constant(node, 1, "weight B")
    w = (w.T if attrs.get("transB", 0) else w) * np.float32(attrs.get("alpha", 1.0))
    c = m.graph.constant(node, 2, "bias C")
    params = {"W": w}
    if c is not None:
        params["b"] = np.broadcast_to(c * np.float32(attrs.get("beta", 1.0)), (w.shape[1],))
    m.add(node, Linear(units=int(w.shape[1]), bias=c is not None), [m.source(node)], params)


def matmul(m: Mapper, node: onnx.NodeProto) -> None:
    w = m.graph.constant(node, 1, "right-hand matrix")
    if len(m.shape(node)) != 1 or w.ndim != 2:
        raise refuse(node, f"(N, {m.shape(node)}) @ {w.shape}: only a flat (N, D) input times a constant (D, units) matrix is supported")
    m.add(node, Linear(units=int(w.shape[1]), bias=False), [m.source(node)], {"W": w})


def _binary(cls: type[Layer]) -> Handler:
    """Add/Mul of two data tensors (broadcasting a size-1 axis); Add of a constant is the bias after MatMul."""
    def handler(m: Mapper, node: onnx.NodeProto) -> None:
        if id(node) in m.skip:
            return
        consts = [i for i, name in enumerate(node.input) if m.graph.is_constant(name)]
        if not consts:
            a, b = m.shape(node, 0), m.shape(node, 1)
            if len(a) != len(b):
                raise refuse(node, f"inputs of per-image shapes {a} and {b}: broadcasting needs inputs of the same rank")
            m.add(node, cls(), [m.source(node, 0), m.source(node, 1)])
            return
        data = 1 - consts[0]
        value = m.graph.constants[node.input[consts[0]]]
        producer = m.holder.get(node.input[data])
        fc = next((n for n in m.nodes if n.name == producer), None)
        single_use = len(m.graph.consumers.get(node.input[data], [])) == 1
        if cls is Add and fc is not None and isinstance(fc.layer, Linear) and not fc.layer.bias and single_use:
            units = fc.layer.units
            if value.size not in (1, units):
                raise refuse(node, f"a bias of shape {value.shape} does not fit {units} units")
            m.nodes[m.nodes.index(fc)] = Node(fc.name, Linear(units=units, bias=True), fc.inputs)
            m.params[f"{fc.name}.b"] = np.broadcast_to(value.astype(np.float32).reshape(-1), (units,)).copy()
            m.alias(node.output[0], fc.name)
            return
        raise refuse(node, f"a constant operand of shape {value.shape}: only the bias after a MatMul is supported")
    return handler


def _activation(make: Callable[[dict], Layer]) -> Handler:
    def handler(m: Mapper, node: onnx.NodeProto) -> None:
        m.add(node, make(m.graph.attrs(node)), [m.source(node)])
    return handler


def clip(m: Mapper, node: onnx.NodeProto) -> None:
    attrs = m.graph.attrs(node)
    low, high = (m.graph.constant(node, i, what) for i, what in ((1, "min"), (2, "max")))
    low = attrs.get("min") if low is None else low
    high = attrs.get("max") if high is None else high
    m.add(node, Clip(min=None if low is None else float(low), max=None if high is None else float(high)), [m.source(node)])


def sigmoid(m: Mapper, node: onnx.NodeProto) -> None:
    """Sigmoid, or SiLU when its one consumer is Mul(x, Sigmoid(x))."""
    x, y = node.input[0], node.output[0]
    users = m.graph.consumers.get(y, [])
    if len(users) == 1 and users[0].op_type == "Mul" and sorted(users[0].input) == sorted([x, y]):
        m.skip.add(id(users[0]))
        m.add(node, SiLU(), [m.source(node)], output=users[0].output[0])
        return
    m.add(node, Sigmoid(), [m.source(node)])


def concat(m: Mapper, node: onnx.NodeProto) -> None:
    axis = int(m.graph.attrs(node).get("axis", 1))
    ranks = {len(m.shape(node, i)) for i in range(len(node.input))}
    if ranks != {3} or axis % 4 != 1:
        raise refuse(node, f"axis {axis} over per-image shapes {[m.shape(node, i) for i in range(len(node.input))]}: "
                           "only channel concatenation of (N, C, H, W) volumes is supported")
    if len(node.input) == 1:
        m.alias(node.output[0], m.source(node))
    else:
        m.add(node, Concat(), [m.source(node, i) for i in range(len(node.input))])


def passthrough(m: Mapper, node: onnx.NodeProto) -> None:
    """Identity, and Dropout at inference (its mask output unused)."""
    if len(node.output) > 1 and node.output[1] and m.graph.consumers.get(node.output[1]):
        raise refuse(node, "the dropout mask output is used")
    m.alias(node.output[0], m.source(node))


def reshape(m: Mapper, node: onnx.NodeProto) -> None:
    """A flatten, a reshape to the same shape, or the first step of a channel shuffle."""
    if id(node) in m.skip:
        return
    before, after = m.shape(node), m.graph.shapes[node.output[0]]
    if after == before:
        m.alias(node.output[0], m.source(node))
        return
    if len(after) == 1:
        _flat(m, node)
        return
    shuffle = _channel_shuffle(m, node, before, after)
    if shuffle is not None:
        groups, transpose, back = shuffle
        m.skip.update((id(transpose), id(back)))
        m.add(node, ChannelShuffle(groups=groups), [m.source(node)], output=back.output[0])
        return
    raise refuse(node, f"per-image shape {before} -> {after}: only flattening and the channel shuffle "
                       "(Reshape -> Transpose(perm=[0, 2, 1, 3, 4]) -> Reshape) are supported")


def _channel_shuffle(m: Mapper, node: onnx.NodeProto, before, after):
    """(groups, Transpose, last Reshape) when ``node`` starts a channel shuffle, else None."""
    if len(before) != 3 or len(after) != 4 or after[0] * after[1] != before[0] or after[2:] != before[1:]:
        return None
    users = m.graph.consumers.get(node.output[0], [])
    if len(users) != 1 or users[0].op_type != "Transpose" or list(m.graph.attrs(users[0]).get("perm", [])) != [0, 2, 1, 3, 4]:
        return None
    follow = m.graph.consumers.get(users[0].output[0], [])
    if len(follow) != 1 or follow[0].op_type != "Reshape" or m.graph.shapes[follow[0].output[0]] != before:
        return None
    return after[0], users[0], follow[0]


def transpose(m: Mapper, node: onnx.NodeProto) -> None:
    if id(node) not in m.skip:
        raise refuse(node, f"perm {list(m.graph.attrs(node).get('perm', []))}: a Transpose is supported only "
                           "inside a channel shuffle (Reshape -> Transpose -> Reshape)")


def squeeze(m: Mapper, node: onnx.NodeProto) -> None:
    before, after = m.shape(node), m.graph.shapes[node.output[0]]
    if len(after) == 1 and after[0] == int(np.prod(before)):
        _flat(m, node)
    elif after == before:
        m.alias(node.output[0], m.source(node))
    else:
        raise refuse(node, f"per-image shape {before} -> {after}: only squeezing (C, 1, 1) to (C,) is supported")


def _channel_range(m: Mapper, node: onnx.NodeProto, start: int, stop: int, output: str, suffix: str = "") -> None:
    channels = m.shape(node)[0]
    start, stop = (max(0, min(channels, v + channels if v < 0 else v)) for v in (start, stop))
    if start == 0 and stop == channels:
        m.alias(output, m.source(node))
    else:
        m.add(node, ChannelSlice(start=start, stop=stop), [m.source(node)], output=output, suffix=suffix)


def slice_(m: Mapper, node: onnx.NodeProto) -> None:
    attrs = m.graph.attrs(node)
    if len(m.shape(node)) != 3:
        raise refuse(node, f"per-image shape {m.shape(node)}: slicing is supported on (C, H, W) volumes")
    if "starts" in attrs:
        starts, ends, axes, steps = attrs["starts"], attrs["ends"], attrs.get("axes"), None
    else:
        starts, ends, axes, steps = (m.graph.constant(node, i, w) for i, w in ((1, "starts"), (2, "ends"), (3, "axes"), (4, "steps")))
    axes = list(range(len(starts))) if axes is None else [int(a) % 4 for a in axes]
    steps = [1] * len(starts) if steps is None else [int(s) for s in steps]
    if axes != [1] or steps != [1]:
        raise refuse(node, f"axes {axes} with steps {steps}: only a contiguous range of channels (axis 1, step 1) is supported")
    _channel_range(m, node, int(starts[0]), int(min(ends[0], np.iinfo(np.int64).max)), node.output[0])


def split(m: Mapper, node: onnx.NodeProto) -> None:
    attrs = m.graph.attrs(node)
    if len(m.shape(node)) != 3 or int(attrs.get("axis", 0)) % 4 != 1:
        raise refuse(node, f"axis {attrs.get('axis', 0)} on per-image shape {m.shape(node)}: only splitting channels is supported")
    sizes = [m.graph.shapes[o][0] for o in node.output]
    start = 0
    for i, (output, size) in enumerate(zip(node.output, sizes)):
        if output and m.graph.consumers.get(output):
            _channel_range(m, node, start, start + size, output, suffix=f"_{i}")
        start += size


def softmax(m: Mapper, node: onnx.NodeProto) -> None:
    if len(m.shape(node)) != 1 or int(m.graph.attrs(node).get("axis", -1)) not in (1, -1):
        raise refuse(node, f"per-image shape {m.shape(node)}: only the softmax over a flat score vector is supported")
    m.add(node, Softmax(), [m.source(node)])


HANDLERS: dict[str, Handler] = {
    "Conv": conv,
    "MaxPool": _pool(MaxPool2d),
    "AveragePool": _pool(AvgPool2d),
    "GlobalAveragePool": _global(GlobalAvgPool),
    "GlobalMaxPool": _global(GlobalMaxPool),
    "ReduceMean": _reduce(GlobalAvgPool),
    "ReduceMax": _reduce(GlobalMaxPool),
    "BatchNormalization": batchnorm,
    "Relu": _activation(lambda a: ReLU()),
    "LeakyRelu": _activation(lambda a: LeakyReLU(alpha=float(a.get("alpha", 0.01)))),
    "HardSigmoid": _activation(lambda a: HardSigmoid(alpha=float(a.get("alpha", 0.2)), beta=float(a.get("beta", 0.5)))),
    "HardSwish": _activation(lambda a: HardSwish()),
    "Clip": clip,
    "Sigmoid": sigmoid,
    "Add": _binary(Add),
    "Mul": _binary(Mul),
    "Gemm": gemm,
    "MatMul": matmul,
    "Flatten": flatten,
    "Reshape": reshape,
    "Transpose": transpose,
    "Squeeze": squeeze,
    "Concat": concat,
    "Slice": slice_,
    "Split": split,
    "Identity": passthrough,
    "Dropout": passthrough,
    "Softmax": softmax,
}
"""ONNX op type -> handler: the ops the import supports on the data path (README lists them)."""


def to_network(model: onnx.ModelProto, name: str, data: bytes | None = None) -> tuple[Network, Params, OnnxGraph]:
    """The Network and parameters computing ``model``'s scores (``data``: the serialized model, if at
    hand), or ImportRefused naming what cannot be mapped."""
    graph = read_graph(model, frozenset(HANDLERS), data)
    mapper = Mapper(graph)
    for node in graph.data_nodes:
        HANDLERS[node.op_type](mapper, node)
    last = mapper.holder.get(graph.output_name)
    if last is None or last == INPUT or not mapper.nodes or mapper.nodes[-1].name != last:
        raise ImportRefused(f"output {graph.output_name!r} is not computed by the last mapped layer")
    try:
        network = Network(name, graph.input_shape, mapper.nodes)
    except ValueError as e:
        raise ImportRefused(f"the mapped layers do not form a network: {e}") from e
    for node in network.nodes:
        expected = graph.shapes[mapper.made_by[node.name]]
        if tuple(network.shapes[node.name]) != tuple(expected):
            raise ImportRefused(f"layer {node.name!r} ({node.layer!r}) gives per-image shape {network.shapes[node.name]}, "
                                f"onnxruntime {expected}")
    network.check_params(mapper.params)
    return network, mapper.params, graph
