"""The named built-in architectures (the notes' case studies) and how a name or spec becomes a model.

Sequential nets are written as layer-pattern specs (exporter/spec.py); GoogLeNet and ResNet-18
have branches and are built as graphs (exporter/googlenet.py, exporter/resnet.py). Each entry
carries the class labels and the preprocessing a client's image goes through (DESIGN.md).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .googlenet import googlenet
from .graph import Network
from .resnet import resnet18
from .spec import network_from_spec

CIFAR10_LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
DIGIT_LABELS = [str(d) for d in range(10)]
IMAGENET_LABELS = [f"class_{i}" for i in range(1000)]

CIFAR10_PREPROCESSING = {"color": "rgb", "resize": [32, 32], "scale": 1 / 255,
                         "mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]}
FASHION_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FASHION_PREPROCESSING = {"color": "gray", "resize": [28, 28], "scale": 1 / 255, "mean": [0.286041], "std": [0.353024]}
MNIST_PREPROCESSING = {"color": "gray", "resize": [32, 32], "scale": 1 / 255, "mean": [0.1307], "std": [0.3081]}


def imagenet_preprocessing(size: int) -> dict:
    return {"color": "rgb", "resize": [size, size], "scale": 1 / 255,
            "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def generic_preprocessing(input_shape: tuple[int, int, int]) -> dict:
    """For a custom spec: pixels scaled to [0, 1], no mean or std (there is no dataset to measure)."""
    c, h, w = input_shape
    return {"color": "rgb" if c == 3 else "gray", "resize": [h, w], "scale": 1 / 255, "mean": [0.0] * c, "std": [1.0] * c}


@dataclass(frozen=True)
class Architecture:
    """A built-in: how to build its graph, its labels, preprocessing and (if sequential) its spec."""

    name: str
    description: str
    build: Callable[[str], Network]
    labels: list[str]
    preprocessing: dict
    spec: str | None = None


def _from_spec(name: str, description: str, spec: str, labels: list[str], preprocessing: dict) -> Architecture:
    return Architecture(name, description, lambda model_name: network_from_spec(spec, model_name), labels, preprocessing, spec)


ALEXNET_SPEC = (
    "INPUT[227x227x3] -> CONV11-96/S4/P0 -> RELU -> LRN -> POOL3/S2"
    " -> CONV5-256/P2/G2 -> RELU -> LRN -> POOL3/S2"
    " -> CONV3-384 -> RELU -> CONV3-384/G2 -> RELU -> CONV3-256/G2 -> RELU -> POOL3/S2"
    " -> [FC-4096 -> RELU -> DROPOUT]*2 -> FC-1000"
)
ZFNET_SPEC = (
    "INPUT[224x224x3] -> CONV7-96/S2/P0,0,1,1 -> RELU -> LRN -> POOL3/S2/P0,0,1,1"
    " -> CONV5-256/S2/P0 -> RELU -> LRN -> POOL3/S2/P0,0,1,1"
    " -> CONV3-384 -> RELU -> CONV3-384 -> RELU -> CONV3-256 -> RELU -> POOL3/S2"
    " -> [FC-4096 -> RELU -> DROPOUT]*2 -> FC-1000"
)
VGG16_SPEC = (
    "INPUT[224x224x3] -> [CONV3-64 -> RELU]*2 -> POOL2 -> [CONV3-128 -> RELU]*2 -> POOL2"
    " -> [CONV3-256 -> RELU]*3 -> POOL2 -> [CONV3-512 -> RELU]*3 -> POOL2 -> [CONV3-512 -> RELU]*3 -> POOL2"
    " -> [FC-4096 -> RELU -> DROPOUT]*2 -> FC-1000"
)

ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in [
    _from_spec("cifar-tiny", "the seed's CIFAR-10 example: one 5x5 CONV, a pool and an FC",
               "INPUT[32x32x3] -> CONV5-12/P2 -> RELU -> POOL2 -> FC-10", CIFAR10_LABELS, CIFAR10_PREPROCESSING),
    _from_spec("cifar-vgg", "VGG-style CIFAR-10 net (3x3 CONV pairs, 2x2 pools) for benchmarks",
               "INPUT[32x32x3] -> [CONV3-32 -> RELU]*2 -> POOL2 -> [CONV3-64 -> RELU]*2 -> POOL2"
               " -> [CONV3-128 -> RELU]*2 -> POOL2 -> FC-256 -> RELU -> FC-10", CIFAR10_LABELS, CIFAR10_PREPROCESSING),
    _from_spec("lenet5", "LeNet-5 for 32x32 digits (ReLU and max pooling in place of tanh and subsampling)",
               "INPUT[32x32x1] -> CONV5-6/P0 -> RELU -> POOL2 -> CONV5-16/P0 -> RELU -> POOL2"
               " -> FC-120 -> RELU -> FC-84 -> RELU -> FC-10", DIGIT_LABELS, MNIST_PREPROCESSING),
    _from_spec("alexnet", "AlexNet (ILSVRC 2012): 11x11 S4 first layer, LRN, two-group CONV2/4/5",
               ALEXNET_SPEC, IMAGENET_LABELS, imagenet_preprocessing(227)),
    _from_spec("zfnet", "ZFNet (ILSVRC 2013): AlexNet with a 7x7 S2 first layer and dense middle layers",
               ZFNET_SPEC, IMAGENET_LABELS, imagenet_preprocessing(224)),
    _from_spec("vgg16", "VGG-16 (ILSVRC 2014 runner-up): 3x3 S1 P1 CONVs and 2x2 pools only",
               VGG16_SPEC, IMAGENET_LABELS, imagenet_preprocessing(224)),
    Architecture("googlenet", "GoogLeNet (ILSVRC 2014): inception modules, average pooling instead of big FCs",
                 googlenet, IMAGENET_LABELS, imagenet_preprocessing(224)),
    Architecture("resnet18", "ResNet-18 (ILSVRC 2015): residual blocks with batch normalization",
                 resnet18, IMAGENET_LABELS, imagenet_preprocessing(224)),
    _from_spec("fashion-cnn", "Fashion-MNIST: CONV3-BN-RELU blocks (one at 28x28, two at 14x14), two pools, FC-128",
               "INPUT[28x28x1] -> CONV3-32 -> BN -> RELU -> POOL2 -> [CONV3-64 -> BN -> RELU]*2 -> POOL2"
               " -> FC-128 -> RELU -> DROPOUT-0.3 -> FC-10", FASHION_LABELS, FASHION_PREPROCESSING),
]}


class UnknownArchitecture(ValueError):
    """Neither a built-in name nor a spec; the message lists the known names."""


@dataclass(frozen=True)
class ModelDefinition:
    """What the exporter needs to write a model: graph, labels, preprocessing and provenance."""

    network: Network
    architecture: str
    labels: list[str]
    preprocessing: dict
    spec: str | None


def resolve(arch_or_spec: str, name: str | None = None) -> ModelDefinition:
    """A built-in architecture by name, or a spec string (anything starting with ``INPUT``)."""
    if arch_or_spec in ARCHITECTURES:
        arch = ARCHITECTURES[arch_or_spec]
        return ModelDefinition(arch.build(name or arch.name), arch.name, list(arch.labels), dict(arch.preprocessing), arch.spec)
    if arch_or_spec.strip().upper().startswith("INPUT"):
        network = network_from_spec(arch_or_spec, name or "custom")
        labels = [f"class_{i}" for i in range(network.num_classes)]
        return ModelDefinition(network, "custom", labels, generic_preprocessing(network.input_shape), arch_or_spec)
    raise UnknownArchitecture(
        f"unknown architecture {arch_or_spec!r}; known: {', '.join(ARCHITECTURES)} (or a spec starting with INPUT[WxHxD])"
    )
