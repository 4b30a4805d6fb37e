"""GoogLeNet (Szegedy et al., ILSVRC 2014) without its auxiliary classifiers, 224x224x3 -> 1000.

Inception modules run four branches in parallel (1x1; 1x1 -> 3x3; 1x1 -> 5x5; 3x3 max-pool ->
1x1) and concatenate them on depth; a 7x7 average pool replaces the big FC layers. Caffe's
reference model sizes its pools with ceil mode; here an extra bottom/right pad of one does the
same (DESIGN.md: asymmetric padding replaces ceil mode), and conv1's (3, 3, 2, 2) pads equal
Caffe's floor mode with pad 3.
"""
from __future__ import annotations

from kernels import LRN, AvgPool2d, Concat, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU

from .graph import GraphBuilder, Network

# name: (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection), from the paper's table 1
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64), "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64), "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}
CEIL_POOL = MaxPool2d(size=3, stride=2, pad=(0, 0, 1, 1))


def _conv_relu(g: GraphBuilder, name: str, src: str, filters: int, size: int, pad=0, stride: int = 1) -> str:
    g.add(name, Conv2d(filters=filters, size=size, stride=stride, pad=pad), src)
    return g.add(f"{name}_relu", ReLU())


def _inception(g: GraphBuilder, name: str, src: str) -> str:
    c1, r3, c3, r5, c5, pp = INCEPTION[name]
    p = f"inception{name}"
    b1 = _conv_relu(g, f"{p}_1x1", src, c1, 1)
    b3 = _conv_relu(g, f"{p}_3x3", _conv_relu(g, f"{p}_3x3_reduce", src, r3, 1), c3, 3, pad=1)
    b5 = _conv_relu(g, f"{p}_5x5", _conv_relu(g, f"{p}_5x5_reduce", src, r5, 1), c5, 5, pad=2)
    pool = g.add(f"{p}_pool", MaxPool2d(size=3, stride=1, pad=1), src)
    bp = _conv_relu(g, f"{p}_pool_proj", pool, pp, 1)
    return g.add(f"{p}_output", Concat(), b1, b3, b5, bp)


def googlenet(name: str = "googlenet") -> Network:
    g = GraphBuilder()
    x = _conv_relu(g, "conv1", "input", 64, 7, pad=(3, 3, 2, 2), stride=2)
    g.add("pool1", CEIL_POOL, x)
    g.add("norm1", LRN(size=5, alpha=1e-4, beta=0.75, k=1.0))
    x = _conv_relu(g, "conv2_reduce", "norm1", 64, 1)
    x = _conv_relu(g, "conv2", x, 192, 3, pad=1)
    g.add("norm2", LRN(size=5, alpha=1e-4, beta=0.75, k=1.0), x)
    x = g.add("pool2", CEIL_POOL)
    for stage in ("3", "4", "5"):
        for module in [m for m in INCEPTION if m[0] == stage]:
            x = _inception(g, module, x)
        if stage != "5":
            x = g.add(f"pool{stage}", CEIL_POOL, x)
    g.add("pool5", AvgPool2d(size=7, stride=1), x)
    g.add("flatten", Flatten())
    g.add("dropout", Dropout(p=0.4))
    g.add("classifier", Linear(units=1000))
    return Network(name, (3, 224, 224), g.nodes)
