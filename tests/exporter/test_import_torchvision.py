"""torchvision's ConvNets, exported by torch.onnx with seeded random weights and measured batch-norm
statistics (bench/torchvision_nets.py), imported: each agrees with torch's own scores, and the scores
vary with the input (so agreement is not the trivial one of a net that answers the same for all).
Graphs the kernels cannot express (an LSTM, grid_sample) are refused with the op named."""
from __future__ import annotations

import numpy as np
import pytest

from bench.torchvision_nets import ARCHITECTURES, export
from exporter.cli import main
from exporter.importing import TOLERANCE, import_model
from exporter.repository import reference_forward

VARIES = 100 * TOLERANCE
"""Two random inputs' scores must differ somewhere by at least this fraction of the score range: the
input moves the scores 100 times more than the agreement tolerance allows NumPy and torch to differ,
so agreeing is not the trivial agreement of a net that answers the same for every input."""


def check_import(arch: str, size: int, tmp_path) -> None:
    exported = export(arch, seed=0, size=size)
    source = tmp_path / f"{arch}.onnx"
    source.write_bytes(exported.onnx_bytes)
    path, agreement = import_model(source, tmp_path / "repo", name=arch)
    assert agreement.holds and (path / "model.onnx").read_bytes() == exported.onnx_bytes
    x = np.random.default_rng(1).standard_normal((3, 3, size, size)).astype(np.float32)
    expected = exported.torch_scores(x)
    got = reference_forward(tmp_path / "repo" / arch, x)
    spread = float(expected.max() - expected.min())
    assert got.shape == expected.shape == (3, 1000)
    assert np.abs(got - expected).max() <= TOLERANCE * spread, f"{arch}: NumPy differs from torch"
    assert max(np.abs(expected[i] - expected[j]).max() for i, j in ((0, 1), (0, 2), (1, 2))) >= VARIES * spread, f"{arch}: the scores hardly depend on the input"


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_torchvision_net_imports_and_agrees_with_torch(arch, tmp_path):
    check_import(arch, ARCHITECTURES[arch], tmp_path)


@pytest.mark.slow
def test_resnet50_at_224_imports_and_agrees_with_torch(tmp_path):
    check_import("resnet50", 224, tmp_path)


def _refused(module, x, tmp_path, capsys) -> str:
    import torch

    tmp_path.mkdir()
    source = tmp_path / "net.onnx"
    torch.onnx.export(module.eval(), x, str(source), dynamo=False, opset_version=17, input_names=["input"],
                      output_names=["scores"], dynamic_axes={"input": {0: "batch"}, "scores": {0: "batch"}})
    code = main(["import", str(source), "--name", "net", "--out", str(tmp_path / "repo")])
    assert code == 1 and not (tmp_path / "repo").exists()
    return capsys.readouterr().err


@pytest.mark.slow
def test_an_lstm_and_grid_sample_are_refused_with_the_op_named(tmp_path, capsys):
    import torch

    class RowLSTM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.lstm = torch.nn.LSTM(4 * 8, 10, batch_first=True)

        def forward(self, x):
            rows = self.conv(x).permute(0, 2, 1, 3).flatten(2)  # (N, H, C*W): one step per image row
            return self.lstm(rows)[0][:, -1]

    class Warp(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2, 3, padding=1)

        def forward(self, x):
            grid = self.conv(x).permute(0, 2, 3, 1)
            return torch.nn.functional.grid_sample(x, grid, align_corners=False).mean(dim=(2, 3))

    torch.manual_seed(0)
    x = torch.randn(1, 3, 8, 8)
    err = _refused(RowLSTM(), x, tmp_path / "lstm", capsys)
    assert "LSTM node '/lstm/LSTM'" in err and "not supported by the NumPy kernels" in err, err
    err = _refused(Warp(), x, tmp_path / "warp", capsys)
    assert "GridSample node '/GridSample'" in err and "not supported by the NumPy kernels" in err, err
