"""onnxruntime as the independent reference: run a small hand-written ONNX graph on NumPy inputs."""
import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def run_graph(nodes, inputs: dict[str, np.ndarray], initializers: dict[str, np.ndarray] | None = None,
              outputs=("y",)) -> list[np.ndarray]:
    """Run ONNX ``nodes`` with float32 ``inputs`` and constant ``initializers``; returns the named outputs."""
    graph = helper.make_graph(
        list(nodes), "reference",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(v.shape)) for name, v in inputs.items()],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
        [numpy_helper.from_array(v, name) for name, v in (initializers or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(list(outputs), inputs)


def assert_close(out, ref):
    """float32 results equal to 1e-5 of the reference's scale (summation order differs)."""
    assert out.dtype == np.float32 and out.shape == ref.shape, (out.dtype, out.shape, ref.shape)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * max(np.abs(ref).max(), 1e-30))


def batch(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
