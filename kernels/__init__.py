"""The reference ConvNet in NumPy: layers (NCHW) with pure forward and backward functions."""
from .activation import Clip, Dropout, HardSigmoid, HardSwish, LeakyReLU, ReLU, Sigmoid, SiLU
from .base import Layer, ShapeError
from .conv import Conv2d
from .linear import Flatten, Linear
from .merge import Add, Concat, Mul
from .normalization import LRN, BatchNorm
from .pool import AvgPool2d, GlobalAvgPool, GlobalMaxPool, MaxPool2d
from .shuffle import ChannelShuffle, ChannelSlice
from .softmax import Softmax

LAYER_TYPES: dict[str, type[Layer]] = {
    cls.kind: cls
    for cls in (Conv2d, MaxPool2d, AvgPool2d, GlobalAvgPool, GlobalMaxPool, ReLU, Clip, LeakyReLU, Sigmoid, HardSigmoid,
                HardSwish, SiLU, Dropout, LRN, BatchNorm, Linear, Flatten, Concat, Add, Mul, ChannelShuffle, ChannelSlice,
                Softmax)
}


def layer_from_dict(d: dict) -> Layer:
    """Rebuild a layer from ``Layer.to_dict()`` output."""
    d = dict(d)
    cls = LAYER_TYPES[d.pop("kind")]
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


__all__ = [
    "Layer", "ShapeError", "LAYER_TYPES", "layer_from_dict",
    "Conv2d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool", "GlobalMaxPool", "ReLU", "Clip", "LeakyReLU", "Sigmoid",
    "HardSigmoid", "HardSwish", "SiLU", "Dropout", "LRN", "BatchNorm", "Linear", "Flatten", "Concat", "Add", "Mul",
    "ChannelShuffle", "ChannelSlice", "Softmax",
]
