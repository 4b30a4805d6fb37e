"""The reference ConvNet in NumPy: layers (NCHW) with pure forward and backward functions."""
from .activation import Dropout, ReLU
from .base import Layer, ShapeError
from .conv import Conv2d
from .linear import Flatten, Linear
from .merge import Add, Concat
from .normalization import LRN, BatchNorm
from .pool import AvgPool2d, GlobalAvgPool, MaxPool2d
from .softmax import Softmax

LAYER_TYPES: dict[str, type[Layer]] = {
    cls.kind: cls
    for cls in (Conv2d, MaxPool2d, AvgPool2d, GlobalAvgPool, ReLU, Dropout, LRN, BatchNorm, Linear, Flatten, Concat, Add, Softmax)
}


def layer_from_dict(d: dict) -> Layer:
    """Rebuild a layer from ``Layer.to_dict()`` output."""
    d = dict(d)
    cls = LAYER_TYPES[d.pop("kind")]
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


__all__ = [
    "Layer", "ShapeError", "LAYER_TYPES", "layer_from_dict",
    "Conv2d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool", "ReLU", "Dropout", "LRN", "BatchNorm",
    "Linear", "Flatten", "Concat", "Add", "Softmax",
]
