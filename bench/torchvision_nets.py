"""torchvision's classic ConvNets exported by torch.onnx with seeded random weights, for the import
tests and the import benchmark (no pretrained weights are reachable here).

Random batch-norm statistics (mean 0, variance 1) would let activations grow or vanish layer by
layer until every input gets nearly the same scores, which hides errors; so the statistics are
measured on random batches (train mode, cumulative average) and then perturbed, the way a trained
net's statistics differ from one batch's.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ARCHITECTURES: dict[str, int] = {
    "alexnet": 224, "vgg11_bn": 224, "resnet18": 64, "resnet50": 64, "squeezenet1_1": 64, "googlenet": 64,
    "densenet121": 64, "mobilenet_v2": 64, "mobilenet_v3_small": 64, "shufflenet_v2_x0_5": 64,
    "efficientnet_b0": 64, "regnet_x_400mf": 64,
}
"""Architecture -> the input size its test exports at: 64 where the net allows it; alexnet and vgg
only at 224, where their adaptive pools are the identity (torch.onnx cannot export them otherwise)."""

OPSET = 17


def import_torchvision():
    """torchvision, importable with the CPU torch wheel.

    The PyPI torchvision wheel is built against CUDA torch: its C++ ops (nms, roi_align, ...) fail to
    load with a CPU torch, and torchvision 0.28 then still registers fake kernels for ``nms`` and
    ``qnms`` at import, which raises. Declaring those two schemas first lets it import; the
    classification models use none of the C++ ops.
    """
    import torch

    try:
        import torchvision
        return torchvision
    except RuntimeError as e:
        if "torchvision::nms" not in str(e):
            raise
    import sys

    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    library = torch.library.Library("torchvision", "DEF")  # noqa: F841 (kept alive in the module)
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import_torchvision.library = library  # type: ignore[attr-defined]
    import torchvision
    return torchvision


@dataclass(frozen=True)
class Exported:
    """One exported net: its ONNX bytes, the input size, and the torch model for its own scores."""

    name: str
    size: int
    onnx_bytes: bytes
    model: object

    def torch_scores(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.model(torch.from_numpy(x)).numpy()


def _he_classifier(model) -> None:
    """He-initialized fully connected layers with zero biases: torch's default Linear init shrinks the
    signal by about 0.6 per layer while its biases stay, so alexnet's three FC layers would answer
    nearly the same scores (the biases) for every input."""
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            torch.nn.init.zeros_(m.bias)


def _calibrate_batch_norm(model, size: int, seed: int) -> None:
    """Running statistics measured on random batches, then perturbed (scale of var, shift of mean)."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    generator = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, size, size, generator=generator))
        for m in norms:
            c = m.running_var.shape[0]
            m.running_var.mul_(torch.empty(c).uniform_(0.5, 2.0, generator=generator))
            m.running_mean.add_(0.1 * m.running_var.sqrt() * torch.randn(c, generator=generator))
            m.weight.copy_(torch.empty(c).uniform_(0.5, 1.5, generator=generator))
            m.bias.copy_(0.1 * torch.randn(c, generator=generator))


def build(name: str, seed: int = 0, size: int | None = None):
    """The torchvision model ``name`` in eval mode with seeded weights (He-initialized FC layers) and
    measured batch-norm statistics."""
    import torch

    torchvision = import_torchvision()
    torch.manual_seed(seed)
    kwargs = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
    model = getattr(torchvision.models, name)(weights=None, **kwargs)
    _he_classifier(model)
    _calibrate_batch_norm(model, size or ARCHITECTURES[name], seed)
    return model.eval()


def export(name: str, seed: int = 0, size: int | None = None, input_name: str = "input",
           output_name: str = "scores") -> Exported:
    """``name`` exported by torch.onnx (TorchScript exporter, opset 17) with a dynamic batch axis."""
    import torch

    size = size or ARCHITECTURES[name]
    model = build(name, seed, size)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(1, 3, size, size), buffer, dynamo=False, opset_version=OPSET,
                          input_names=[input_name], output_names=[output_name],
                          dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}})
    return Exported(name, size, buffer.getvalue(), model)


def write(name: str, path: Path, seed: int = 0, size: int | None = None) -> Exported:
    """Export ``name`` to the file ``path``."""
    exported = export(name, seed, size)
    Path(path).write_bytes(exported.onnx_bytes)
    return exported
