"""``python -m exporter import`` on small hand-written ONNX graphs: the repository entry it writes,
the agreement it measures against onnxruntime, and the refusals (op, node and reason named, nothing
written). torchvision's architectures are imported in test_import_torchvision.py."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from exporter import onnx_import
from exporter.cli import main
from exporter.importing import TOLERANCE
from exporter.repository import load_reference, reference_forward
from kernels import LeakyReLU

SIZE = 16


def _weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "conv.W": rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3,
        "conv.b": rng.standard_normal(8).astype(np.float32) * 0.1,
        "bn.gamma": rng.uniform(0.5, 1.5, 8).astype(np.float32),
        "bn.beta": rng.standard_normal(8).astype(np.float32) * 0.1,
        "bn.mean": rng.standard_normal(8).astype(np.float32) * 0.1,
        "bn.var": rng.uniform(0.5, 2.0, 8).astype(np.float32),
        "fc.W": rng.standard_normal((5, 8)).astype(np.float32),
        "fc.b": rng.standard_normal(5).astype(np.float32),
    }


def tiny_model(batch="batch", nodes: list | None = None, kernel=(3, 3)) -> onnx.ModelProto:
    """image [N, 3, 16, 16] -> Conv -> BatchNormalization -> Relu -> MaxPool(ceil) -> GAP -> Flatten -> Gemm -> logits."""
    w = _weights()
    if kernel != (3, 3):
        w["conv.W"] = w["conv.W"][:, :, :kernel[0], :kernel[1]].copy()
    body = nodes if nodes is not None else [
        helper.make_node("Conv", ["image", "conv.W", "conv.b"], ["c"], name="/features/conv", kernel_shape=list(kernel),
                         pads=[1, 1, 1, 1] if kernel == (3, 3) else [0, 0, 0, 0]),
        helper.make_node("BatchNormalization", ["c", "bn.gamma", "bn.beta", "bn.mean", "bn.var"], ["n"], name="/features/bn"),
        helper.make_node("Relu", ["n"], ["r"], name="/features/relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="/features/pool", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
        helper.make_node("GlobalAveragePool", ["p"], ["g"], name="/gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="/flatten", axis=1),
        helper.make_node("Gemm", ["f", "fc.W", "fc.b"], ["logits"], name="/fc", transB=1),
    ]
    graph = helper.make_graph(body, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, SIZE, SIZE])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 5])],
                              initializer=[numpy_helper.from_array(v, k) for k, v in w.items()]
                              + [numpy_helper.from_array(np.array(2.0, np.float32), "two")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="hand", producer_version="1.2")
    model.ir_version = 8
    return model


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "tiny.onnx"
    path.write_bytes(tiny_model().SerializeToString())
    return path


def run_import(capsys, *argv) -> tuple[int, str, str]:
    code = main(["import", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def onnx_scores(path, x: np.ndarray, input_name: str = "image") -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {input_name: x})[0]


def test_import_writes_the_entry_with_the_users_file_names_and_agreement(source, tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"thing {i}" for i in range(5)) + "\n")
    repo = tmp_path / "repo"
    code, out, err = run_import(capsys, source, "--name", "tiny", "--out", repo, "--labels", labels, "--preprocessing", "none")
    assert code == 0, err
    assert "NumPy and onnxruntime agree" in out and f"wrote {repo / 'tiny' / '1'}" in out
    config = json.loads((repo / "tiny" / "config.json").read_text())
    assert config["input"] == {"name": "image", "datatype": "FP32", "shape": [3, SIZE, SIZE], "layout": "NCHW"}
    assert config["output"] == {"name": "logits", "datatype": "FP32", "shape": [5]}
    assert config["labels"] == [f"thing {i}" for i in range(5)]
    assert config["preprocessing"]["mean"] == [0.0] * 3 and config["preprocessing"]["resize"] == [SIZE, SIZE]
    assert (repo / "tiny" / "1" / "model.onnx").read_bytes() == source.read_bytes()
    meta = json.loads((repo / "tiny" / "1" / "metadata.json").read_text())
    assert meta["source"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert (meta["source"]["producer_name"], meta["source"]["producer_version"], meta["source"]["opset"]) == ("hand", "1.2", 17)
    assert meta["agreement"]["relative"] <= meta["agreement"]["tolerance"] == TOLERANCE
    x = np.random.default_rng(7).standard_normal((3, 3, SIZE, SIZE)).astype(np.float32)
    expected = onnx_scores(source, x)
    np.testing.assert_allclose(reference_forward(repo / "tiny", x), expected, rtol=1e-5, atol=1e-5)


def test_the_mapped_layers_and_parameters(source, tmp_path, capsys):
    repo = tmp_path / "repo"
    assert run_import(capsys, source, "--name", "tiny", "--out", repo)[0] == 0
    network, params, config = load_reference(repo / "tiny")
    assert [n.layer.kind for n in network.nodes] == ["conv", "batchnorm", "relu", "maxpool", "globalavgpool", "flatten", "fc"]
    assert network.shapes[network.nodes[3].name] == (8, 8, 8)  # ceil((16 - 3) / 2) + 1
    w = _weights()
    np.testing.assert_array_equal(params[f"{network.nodes[-1].name}.W"], w["fc.W"].T)
    np.testing.assert_array_equal(params[f"{network.nodes[0].name}.W"], w["conv.W"])
    assert config["preprocessing"]["mean"] == [0.485, 0.456, 0.406]  # the imagenet preset is the default


def test_summary_prints_the_table_of_an_imported_model(source, tmp_path, capsys):
    repo = tmp_path / "repo"
    assert run_import(capsys, source, "--name", "tiny", "--out", repo)[0] == 0
    assert main(["summary", str(repo / "tiny"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    trainable = sum(v.size for k, v in _weights().items() if not k.endswith(("mean", "var")))
    assert summary["params"] == trainable and summary["non_trainable"] == 16
    conv = summary["layers"][1]
    assert (conv["kind"], conv["volume"], conv["macs"]) == ("conv", "16x16x8", 16 * 16 * 8 * 27)
    assert main(["summary", str(repo / "tiny")]) == 0
    assert "features_conv" in capsys.readouterr().out


@pytest.mark.parametrize("preset, mean, std", [("imagenet", [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
                                              ("none", [0.0] * 3, [1.0] * 3)])
def test_preprocessing_presets(source, tmp_path, capsys, preset, mean, std):
    assert run_import(capsys, source, "--name", "tiny", "--out", tmp_path, "--preprocessing", preset)[0] == 0
    pre = json.loads((tmp_path / "tiny" / "config.json").read_text())["preprocessing"]
    assert (pre["mean"], pre["std"], pre["resize"], pre["color"]) == (mean, std, [SIZE, SIZE], "rgb")


def test_preprocessing_from_a_json_file(source, tmp_path, capsys):
    given = tmp_path / "pre.json"
    given.write_text(json.dumps({"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "invert": "auto"}))
    assert run_import(capsys, source, "--name", "tiny", "--out", tmp_path, "--preprocessing", given, "--version", 3)[0] == 0
    pre = json.loads((tmp_path / "tiny" / "config.json").read_text())["preprocessing"]
    assert (pre["mean"], pre["std"], pre["invert"], pre["scale"]) == ([0.5] * 3, [0.25] * 3, "auto", 1 / 255)
    assert (tmp_path / "tiny" / "3" / "graph.json").is_file()
    given.write_text(json.dumps({"std": [0.0, 1.0, 1.0]}))
    code, _, err = run_import(capsys, source, "--name", "other", "--out", tmp_path, "--preprocessing", given)
    assert code == 1 and "preprocessing.std: expected positive numbers" in err and not (tmp_path / "other").exists()


def _replace(model: onnx.ModelProto, name: str, node: onnx.NodeProto) -> onnx.ModelProto:
    nodes = [node if n.name == name else n for n in model.graph.node]
    return tiny_model(nodes=nodes)


REFUSALS = {
    "unknown op": (_replace(tiny_model(), "/features/relu", helper.make_node("Erf", ["n"], ["r"], name="/features/erf")),
                   ["Erf node '/features/erf'", "not supported by the NumPy kernels"]),
    "non-square kernel": (tiny_model(kernel=(3, 1)), ["Conv node '/features/conv'", "kernel [3, 1]"]),
    "dilated pool": (_replace(tiny_model(), "/features/pool", helper.make_node(
        "MaxPool", ["r"], ["p"], name="/features/pool", kernel_shape=[3, 3], dilations=[2, 2])),
        ["MaxPool node '/features/pool'", "dilated pooling"]),
    "constant operand": (_replace(tiny_model(), "/features/relu", helper.make_node("Mul", ["n", "two"], ["r"], name="/scale")),
                         ["Mul node '/scale'", "constant operand"]),
    "fixed batch": (tiny_model(batch=1), ["input 'image'", "batch axis is fixed at 1", "dynamic_axes"]),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_refusals_name_the_op_the_node_and_the_reason_and_write_nothing(tmp_path, capsys, case):
    model, words = REFUSALS[case]
    path = tmp_path / "bad.onnx"
    path.write_bytes(model.SerializeToString())
    code, out, err = run_import(capsys, path, "--name", "bad", "--out", tmp_path / "repo")
    assert code == 1
    assert all(w in err for w in words), err
    assert not (tmp_path / "repo").exists()


def test_a_mapping_that_disagrees_with_onnxruntime_fails_and_writes_nothing(source, tmp_path, capsys, monkeypatch):
    leaky = onnx_import._activation(lambda attrs: LeakyReLU(alpha=0.5))
    monkeypatch.setitem(onnx_import.HANDLERS, "Relu", leaky)
    code, out, err = run_import(capsys, source, "--name", "tiny", "--out", tmp_path / "repo")
    assert code == 1
    assert "NumPy and onnxruntime DISAGREE" in out and "nothing written" in err
    assert not (tmp_path / "repo" / "tiny").exists()


def shuffle_model() -> onnx.ModelProto:
    """Split, SiLU as x * Sigmoid(x), a channel shuffle whose shapes come from a Shape -> Gather ->
    Unsqueeze -> Concat chain (as torch writes it), Clip, ReduceMean and a MatMul + Add head."""
    rng = np.random.default_rng(3)
    init = {"w": rng.standard_normal((8, 3, 1, 1)).astype(np.float32), "fc": rng.standard_normal((8, 3)).astype(np.float32),
            "bias": rng.standard_normal(3).astype(np.float32), "halves": np.array([4, 4], np.int64),
            "zero": np.array([0], np.int64), "two": np.array([2], np.int64), "minus": np.array([-1], np.int64),
            "cpg": np.array([4], np.int64), "hw": np.array([2, 3], np.int64), "lo": np.array(0.0, np.float32),
            "hi": np.array(6.0, np.float32)}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("Split", ["c", "halves"], ["a", "b"], name="split", axis=1),
        helper.make_node("Sigmoid", ["b"], ["s"], name="sig"),
        helper.make_node("Mul", ["b", "s"], ["silu"], name="swish"),
        helper.make_node("Concat", ["a", "silu"], ["cat"], name="cat", axis=1),
        helper.make_node("Shape", ["cat"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", "zero"], ["n"], name="batch", axis=0),
        helper.make_node("Gather", ["shape", "hw"], ["hw_size"], name="spatial", axis=0),
        helper.make_node("Concat", ["n", "two", "cpg", "hw_size"], ["five"], name="five", axis=0),
        helper.make_node("Reshape", ["cat", "five"], ["r5"], name="view"),
        helper.make_node("Transpose", ["r5"], ["t5"], name="swap", perm=[0, 2, 1, 3, 4]),
        helper.make_node("Concat", ["n", "minus", "hw_size"], ["four"], name="four", axis=0),
        helper.make_node("Reshape", ["t5", "four"], ["shuffled"], name="back"),
        helper.make_node("Clip", ["shuffled", "lo", "hi"], ["relu6"], name="relu6"),
        helper.make_node("ReduceMean", ["relu6"], ["mean"], name="mean", axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["mean", "fc"], ["mm"], name="head"),
        helper.make_node("Add", ["mm", "bias"], ["out"], name="head_bias"),
    ]
    graph = helper.make_graph(nodes, "shuffle", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 3])],
                              initializer=[numpy_helper.from_array(v, k) for k, v in init.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_constant_shape_chains_split_silu_and_the_channel_shuffle(tmp_path, capsys):
    source = tmp_path / "shuffle.onnx"
    source.write_bytes(shuffle_model().SerializeToString())
    assert run_import(capsys, source, "--name", "shuffle", "--out", tmp_path / "repo", "--preprocessing", "none")[0] == 0
    network, params, _ = load_reference(tmp_path / "repo" / "shuffle")
    assert [n.layer.kind for n in network.nodes] == ["conv", "channelslice", "channelslice", "silu", "concat",
                                                     "channelshuffle", "clip", "globalavgpool", "fc"]
    assert network.nodes[5].layer.groups == 2 and network.nodes[-1].layer.bias
    x = np.random.default_rng(8).standard_normal((5, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(reference_forward(tmp_path / "repo" / "shuffle", x), onnx_scores(source, x, "x"),
                               rtol=1e-5, atol=1e-5)
