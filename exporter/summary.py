"""Per-layer output volume, parameters, activations and multiply-adds of a Network, with totals.

Every figure is computed from the layers' shape rules; totals are sums of the rows. Activations
count the values one image holds at test time, the notes' way: the input counts, and layers
that write no new values count zero — ReLU (applied in place), Dropout (the identity at
inference) and Flatten (a reshaped view). Bytes are float32 (4 per value); KB/MB are 1024-based.
Parameters are the trainable ones; batch-norm running mean/var are reported separately as state.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .graph import INPUT, Network

IN_PLACE = frozenset({"relu", "dropout", "flatten"})
FLOAT32_BYTES = 4


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    inputs: list[str]
    output_shape: list[int]  # per sample, (C, H, W) or (D,)
    params: int
    state: int  # non-trainable values (batch-norm statistics)
    activations: int
    activation_bytes: int
    macs: int

    @property
    def volume(self) -> str:
        """The output volume the notes' way, W x H x D (or D for a vector)."""
        s = self.output_shape
        return f"{s[2]}x{s[1]}x{s[0]}" if len(s) == 3 else "x".join(map(str, s))


@dataclass(frozen=True)
class Summary:
    name: str
    input_shape: list[int]
    layers: list[LayerRow]

    @property
    def params(self) -> int:
        return sum(r.params for r in self.layers)

    @property
    def state(self) -> int:
        return sum(r.state for r in self.layers)

    @property
    def activations(self) -> int:
        return sum(r.activations for r in self.layers)

    @property
    def activation_bytes(self) -> int:
        return sum(r.activation_bytes for r in self.layers)

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.layers)

    def to_json(self) -> dict:
        return {
            "name": self.name, "input_shape": self.input_shape,
            "params": self.params, "non_trainable": self.state, "activations": self.activations,
            "activation_bytes": self.activation_bytes, "macs": self.macs,
            "layers": [dict(asdict(r), volume=r.volume) for r in self.layers],
        }

    def table(self) -> str:
        head = ("layer", "kind", "output (WxHxD)", "params", "activations", "memory", "multiply-adds")
        rows = [(r.name, r.kind, r.volume, f"{r.params:,}", f"{r.activations:,}", human_bytes(r.activation_bytes), f"{r.macs:,}")
                for r in self.layers]
        rows.append(("total", "", "", f"{self.params:,}", f"{self.activations:,}", human_bytes(self.activation_bytes), f"{self.macs:,}"))
        widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(len(head))]
        fmt = lambda row: "  ".join(str(v).ljust(w) if i < 3 else str(v).rjust(w) for i, (v, w) in enumerate(zip(row, widths)))
        lines = [fmt(head), "  ".join("-" * w for w in widths), *map(fmt, rows[:-1]), "  ".join("-" * w for w in widths), fmt(rows[-1])]
        notes = [f"{self.name}: input {self.layers[0].volume}; activations per image at test time "
                 "(ReLU in place, dropout and flatten hold no new values); float32 bytes"]
        if self.state:
            notes.append(f"non-trainable state (batch-norm mean/var): {self.state:,} values")
        return "\n".join(notes + [""] + lines)


def human_bytes(n: int) -> str:
    for unit, size in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def summarize(network: Network) -> Summary:
    """One row for the input and one per node, in graph order."""
    rows = [LayerRow(INPUT, "input", [], list(network.input_shape), 0, 0, int(np.prod(network.input_shape)),
                     FLOAT32_BYTES * int(np.prod(network.input_shape)), 0)]
    for node in network.nodes:
        in_shape = network.node_input_shape(node, network.shapes)
        shapes = node.layer.param_shapes(in_shape)
        counts = {p: int(np.prod(s)) for p, s in shapes.items()}
        state = sum(c for p, c in counts.items() if p in node.layer.non_trainable)
        out = network.shapes[node.name]
        acts = 0 if node.layer.kind in IN_PLACE else int(np.prod(out))
        rows.append(LayerRow(node.name, node.layer.kind, list(node.inputs), list(out), sum(counts.values()) - state, state,
                             acts, FLOAT32_BYTES * acts, int(node.layer.macs(in_shape))))
    return Summary(network.name, list(network.input_shape), rows)
