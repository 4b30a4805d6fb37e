"""ResNet-18 (He et al., ILSVRC 2015): residual basic blocks with batch normalization, 224x224x3 -> 1000.

Each basic block is CONV3 -> BN -> RELU -> CONV3 -> BN, added to its input (through a 1x1
stride-2 CONV + BN where the volume shrinks), then RELU. Convolutions have no bias (BN follows).
Sizes: a 1x1 stride-2 convolution over an even volume is not an integer configuration (the
notes' rule), so the stem pads conv1 by (3, 3, 2, 2) (Caffe/PyTorch floor mode, 224 -> 112) and
its max pool by (1, 1, 2, 2) (112 -> 57); the stages then run at 57, 29, 15 and 8 instead of
torchvision's 56, 28, 14, 7. Parameters are unchanged: 11,689,512 trainable.
"""
from __future__ import annotations

from kernels import Add, BatchNorm, Conv2d, Flatten, GlobalAvgPool, Linear, MaxPool2d, ReLU

from .graph import GraphBuilder, Network

STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # (filters, stride of the first block)


def _conv_bn(g: GraphBuilder, name: str, src: str, filters: int, size: int, stride: int, pad) -> str:
    g.add(f"{name}", Conv2d(filters=filters, size=size, stride=stride, pad=pad, bias=False), src)
    return g.add(f"{name}_bn", BatchNorm())


def _basic_block(g: GraphBuilder, name: str, src: str, filters: int, stride: int, project: bool) -> str:
    x = _conv_bn(g, f"{name}_conv1", src, filters, 3, stride, 1)
    x = g.add(f"{name}_relu1", ReLU(), x)
    x = _conv_bn(g, f"{name}_conv2", x, filters, 3, 1, 1)
    shortcut = _conv_bn(g, f"{name}_downsample", src, filters, 1, stride, 0) if project else src
    g.add(f"{name}_add", Add(), x, shortcut)
    return g.add(f"{name}_relu2", ReLU())


def resnet18(name: str = "resnet18") -> Network:
    g = GraphBuilder()
    x = _conv_bn(g, "conv1", "input", 64, 7, 2, (3, 3, 2, 2))
    g.add("relu", ReLU(), x)
    x = g.add("maxpool", MaxPool2d(size=3, stride=2, pad=(1, 1, 2, 2)))
    channels = 64
    for stage, (filters, stride) in enumerate(STAGES, start=1):
        for block in range(2):
            first = block == 0
            x = _basic_block(g, f"layer{stage}_{block}", x, filters, stride if first else 1, first and (stride != 1 or channels != filters))
        channels = filters
    g.add("avgpool", GlobalAvgPool(), x)
    g.add("flatten", Flatten())
    g.add("fc", Linear(units=1000))
    return Network(name, (3, 224, 224), g.nodes)
