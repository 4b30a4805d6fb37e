"""The layer-pattern spec: a ConvNet written in the notation of the cs231n notes.

Grammar (keywords are case-insensitive, spaces are ignored between tokens)::

    spec   := INPUT[<W>x<H>x<D>] ( "->" item )*
    item   := layer | "[" item ( "->" item )* "]" [ "*" <N> ]      # N >= 0 repetitions (default 1)
    layer  := CONV<F>-<K> [/S<s>] [/P<p>] [/D<d>] [/G<g>]          # K filters F x F, stride s (1),
                                                                   # padding p, dilation d (1), groups g (1)
            | POOL<F> [/S<s>] [/P<p>]      (also MAXPOOL<F>)       # max pooling, stride s (F), padding p (0)
            | AVGPOOL<F> [/S<s>] [/P<p>]                           # average pooling (padding not counted)
            | GAP                                                  # global average pooling -> D x 1 x 1
            | FC-<N>                                               # fully connected, N outputs
            | RELU | BN | LRN[<n>] | DROPOUT[-<p>]                 # LRN n=5, k=2, alpha=1e-4, beta=0.75;
                                                                   # dropout p=0.5
    <p>    := <int> | <top>,<left>,<bottom>,<right>

The volume is written W x H x D as in the notes; the network's input is (D, H, W) (NCHW).
CONV's padding defaults to (F - 1) / 2 for odd F ("same" size at stride 1, the notes' usual
CONV3 = 3x3, S1, P1) and to 0 for even F; write /P0 for a valid (unpadded) convolution.
A FLATTEN is inserted before the first FC that follows a volume. Example::

    INPUT[32x32x3] -> [[CONV3-16 -> RELU]*2 -> POOL2]*2 -> [FC-64 -> RELU]*1 -> FC-10

Every error names the token and its character position (1-based); a layer that does not fit
its input volume (e.g. a non-integer output size) names the layer token as well.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from kernels import (
    LRN, AvgPool2d, BatchNorm, Conv2d, Dropout, Flatten, GlobalAvgPool, Layer, Linear, MaxPool2d, ReLU, ShapeError,
)

from .graph import INPUT, Network, Node


class SpecError(ValueError):
    """A spec that cannot be parsed or does not fit together; the message names token and position."""


@dataclass(frozen=True)
class Token:
    kind: str  # "arrow", "open", "close", "star", "int", "word", "input"
    text: str
    pos: int  # 1-based character position


_TOKEN = re.compile(
    r"(?P<space>\s+)|(?P<arrow>->)|(?P<input>INPUT\s*\[[^\]]*\])|(?P<open>\[)|(?P<close>\])|(?P<star>\*)"
    r"|(?P<int>\d+(?![\w.]))|(?P<word>[A-Za-z](?:[A-Za-z0-9./,]|-(?!>))*)",
    re.IGNORECASE,
)
_INPUT = re.compile(r"INPUT\s*\[\s*(\d+)\s*x\s*(\d+)\s*x\s*(\d+)\s*\]$", re.IGNORECASE)
_PAD = r"\d+(?:,\d+,\d+,\d+)?"
_LAYERS: list[tuple[str, str, re.Pattern, str]] = [  # kind, keyword, pattern, the form errors quote
    ("conv", "CONV", re.compile(rf"CONV(\d+)-(\d+)((?:/[SPDG]{_PAD})*)$", re.I),
     "CONV<F>-<K>[/S<stride>][/P<pad>][/D<dilation>][/G<groups>]"),
    ("maxpool", "MAXPOOL", re.compile(rf"MAXPOOL(\d+)((?:/[SP]{_PAD})*)$", re.I), "POOL<F>[/S<stride>][/P<pad>]"),
    ("avgpool", "AVGPOOL", re.compile(rf"AVGPOOL(\d+)((?:/[SP]{_PAD})*)$", re.I), "AVGPOOL<F>[/S<stride>][/P<pad>]"),
    ("maxpool", "POOL", re.compile(rf"POOL(\d+)((?:/[SP]{_PAD})*)$", re.I), "POOL<F>[/S<stride>][/P<pad>]"),
    ("fc", "FC", re.compile(r"FC-(\d+)$", re.I), "FC-<N>"),
    ("lrn", "LRN", re.compile(r"LRN(\d*)$", re.I), "LRN[<n>]"),
    ("dropout", "DROPOUT", re.compile(r"DROPOUT(?:-(\d*\.?\d+))?$", re.I), "DROPOUT[-<p>]"),
    ("relu", "RELU", re.compile(r"RELU$", re.I), "RELU"),
    ("batchnorm", "BN", re.compile(r"BN$", re.I), "BN"),
    ("globalavgpool", "GAP", re.compile(r"GAP$", re.I), "GAP"),
]


def tokenize(text: str) -> list[Token]:
    tokens, i = [], 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if not m:
            raise SpecError(f"spec: unexpected character {text[i]!r} at character {i + 1}")
        if m.lastgroup != "space":
            tokens.append(Token(m.lastgroup, m.group(), i + 1))
        i = m.end()
    return tokens


def _options(token: Token, text: str) -> dict[str, int | tuple[int, ...]]:
    """``/S2/P0,0,1,1`` -> {"S": 2, "P": (0, 0, 1, 1)}; the layer's pattern has admitted the letters."""
    opts: dict[str, int | tuple[int, ...]] = {}
    for part in filter(None, text.split("/")):
        key, value = part[0].upper(), part[1:]
        if key in opts:
            raise SpecError(f"spec: option /{part} of {token.text!r} at character {token.pos} is repeated")
        nums = tuple(int(v) for v in value.split(","))
        if len(nums) == 4 and key != "P":
            raise SpecError(f"spec: option /{part} of {token.text!r} at character {token.pos} takes one integer")
        opts[key] = nums if len(nums) == 4 else nums[0]
    return opts


def parse_layer(token: Token) -> Layer:
    """One layer token -> its kernel layer; a malformed token names the form it should take."""
    for kind, _, pattern, _ in _LAYERS:
        m = pattern.match(token.text)
        if not m:
            continue
        if kind == "conv":
            f, k = int(m.group(1)), int(m.group(2))
            o = _options(token, m.group(3))
            pad = o.get("P", (f - 1) // 2 if f % 2 else 0)
            return Conv2d(filters=k, size=f, stride=o.get("S", 1), pad=pad, dilation=o.get("D", 1), groups=o.get("G", 1))
        if kind in ("maxpool", "avgpool"):
            o = _options(token, m.group(2))
            cls = MaxPool2d if kind == "maxpool" else AvgPool2d
            return cls(size=int(m.group(1)), stride=o.get("S"), pad=o.get("P", 0))
        if kind == "fc":
            return Linear(units=int(m.group(1)))
        if kind == "lrn":
            return LRN(size=int(m.group(1) or 5))
        if kind == "dropout":
            return Dropout(p=float(m.group(1) or 0.5))
        return {"relu": ReLU, "batchnorm": BatchNorm, "globalavgpool": GlobalAvgPool}[kind]()
    for _, keyword, _, form in _LAYERS:
        if token.text.upper().startswith(keyword):
            raise SpecError(f"spec: malformed layer {token.text!r} at character {token.pos}: expected {form}")
    forms = ", ".join(dict.fromkeys(form for *_, form in _LAYERS))
    raise SpecError(f"spec: unknown layer {token.text!r} at character {token.pos}; known layers: {forms}")


class _Parser:
    def __init__(self, text: str):
        self.tokens = tokenize(text)
        self.i = 0
        self.end = len(text) + 1

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, kind: str, what: str) -> Token:
        tok = self.peek()
        if tok is None or tok.kind != kind:
            where = f"{tok.text!r} at character {tok.pos}" if tok else f"the end of the spec (character {self.end})"
            raise SpecError(f"spec: expected {what} but found {where}")
        self.i += 1
        return tok

    def sequence(self, closing: bool) -> list[tuple[Layer, Token]]:
        layers = self.item()
        while (tok := self.peek()) is not None and tok.kind == "arrow":
            self.i += 1
            layers += self.item()
        tok = self.peek()
        if closing and (tok is None or tok.kind != "close"):
            self.take("close", "'->' or ']'")
        if not closing and tok is not None:
            raise SpecError(f"spec: expected '->' but found {tok.text!r} at character {tok.pos}")
        return layers

    def item(self) -> list[tuple[Layer, Token]]:
        tok = self.peek()
        if tok is not None and tok.kind == "open":
            self.i += 1
            body = self.sequence(closing=True)
            self.take("close", "']'")
            times = 1
            if (star := self.peek()) is not None and star.kind == "star":
                self.i += 1
                times = int(self.take("int", "a repeat count after '*'").text)
            return body * times
        word = self.take("word", "a layer or '['")
        return [(parse_layer(word), word)]


@dataclass(frozen=True)
class Spec:
    """A parsed spec: the input volume (C, H, W) and the layers in order with their tokens."""

    text: str
    input_shape: tuple[int, int, int]
    layers: list[tuple[Layer, Token]]


def parse_spec(text: str) -> Spec:
    if not isinstance(text, str) or not text.strip():
        raise SpecError("spec: empty; expected e.g. 'INPUT[32x32x3] -> CONV3-16 -> RELU -> POOL2 -> FC-10'")
    parser = _Parser(text)
    first = parser.take("input", "INPUT[<W>x<H>x<D>]")
    m = _INPUT.match(first.text)
    if not m or min(int(g) for g in m.groups()) <= 0:
        raise SpecError(f"spec: malformed input {first.text!r} at character {first.pos}: expected INPUT[<W>x<H>x<D>] of positive integers")
    w, h, d = (int(g) for g in m.groups())
    layers: list[tuple[Layer, Token]] = []
    if parser.peek() is not None:
        parser.take("arrow", "'->'")
        layers = parser.sequence(closing=False)
    if not layers:
        raise SpecError(f"spec: {text!r} has no layers after the input")
    return Spec(text, (d, h, w), layers)


def network_from_spec(text: str, name: str = "custom") -> Network:
    """Build the Network a spec describes; nodes are named by kind and count (conv1, relu1, ...)."""
    spec = parse_spec(text)
    counts: dict[str, int] = {}
    nodes: list[Node] = []
    shape: tuple[int, ...] = spec.input_shape
    prev = INPUT

    def add(layer: Layer, token: Token) -> None:
        nonlocal shape, prev
        try:
            shape = layer.output_shape(shape)
        except ShapeError as e:
            raise SpecError(f"spec: layer {token.text!r} at character {token.pos} does not fit: {e}") from e
        counts[layer.kind] = counts.get(layer.kind, 0) + 1
        node = Node(f"{layer.kind}{counts[layer.kind]}", layer, (prev,))
        nodes.append(node)
        prev = node.name

    for layer, token in spec.layers:
        if isinstance(layer, Linear) and len(shape) == 3:
            add(Flatten(), token)
        add(layer, token)
    return Network(name, spec.input_shape, nodes)
