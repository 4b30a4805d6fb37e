"""The fault-injection test hook is off unless asked for and fires only on marked batches; a model
whose session fails in its warm-up run is isolated (not ready, with the reason) like a corrupt one."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from tiny_models import SHAPE, tiny_config, write_model

from service.config import ServerConfig
from service.faults import FAULT_ENV, SLOW_ENV, InjectedFault, inject
from service.models import ModelRegistry


def compute(instance: int, batch: np.ndarray) -> np.ndarray:
    return batch.reshape(len(batch), -1).sum(axis=1)


def test_the_hook_is_off_by_default():
    assert inject(compute, "m", environ={}) is compute
    assert inject(compute, "m", environ={"UNRELATED": "1"}) is compute


def test_only_batches_holding_a_marked_image_fail(caplog):
    faulty = inject(compute, "m", environ={FAULT_ENV: "1234.5"})
    assert "TEST HOOK" in caplog.text
    x = np.zeros((3, *SHAPE), np.float32)
    np.testing.assert_array_equal(faulty(0, x), compute(0, x))
    x[2, 1, 0, 0] = 1234.5  # not the first value of an image: no trigger
    np.testing.assert_array_equal(faulty(0, x), compute(0, x))
    x[1, 0, 0, 0] = 1234.5
    with pytest.raises(InjectedFault, match="batch of 3 images"):
        faulty(0, x)


def test_bad_hook_values_are_refused():
    with pytest.raises(ValueError, match=SLOW_ENV):
        inject(compute, "m", environ={SLOW_ENV: "5"})


def failing_at_run_onnx() -> bytes:
    """Valid and loadable, but its Reshape cannot run on the input: onnxruntime fails in session.run."""
    features = int(np.prod(SHAPE))
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["input", "shape"], ["scores"])], "broken-at-run",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *SHAPE])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 3])],
        initializer=[helper.make_tensor("shape", TensorProto.INT64, [2], [-1, features + 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_a_version_failing_its_warm_up_run_is_isolated(tmp_path):
    repo = tmp_path / "models"
    write_model(repo, "tiny", versions=(1,))
    (repo / "tiny" / "2").mkdir()
    (repo / "tiny" / "2" / "model.onnx").write_bytes(failing_at_run_onnx())
    write_model(repo, "other", versions=(1,), config=tiny_config("other"))
    registry = ModelRegistry.load(ServerConfig(models=repo))
    tiny = registry.get("tiny")
    assert tiny.default.version == 1 and not tiny.versions[2].ready
    reason = tiny.versions[2].reason
    assert "2/model.onnx: Fail:" in reason and "Reshape" in reason  # onnxruntime's own error type, not SessionLoadError
    assert registry.get("other").ready
    onnx.checker.check_model(onnx.load_from_string(failing_at_run_onnx()))  # a valid model: only running it fails


def test_the_hook_is_imported_only_when_its_variable_is_set():
    """Loading the models does not import service.faults unless a CONVNET_INJECT_* variable is set."""
    import os
    import subprocess
    import sys

    code = ("import sys; from service.models import with_test_hook; f = lambda i, b: b; "
            "hooked = with_test_hook(f, 'm'); print('service.faults' in sys.modules, hooked is f)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVNET_INJECT_")}

    def run(**extra: str) -> str:
        return subprocess.run([sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True,
                              check=True).stdout.split()

    assert run() == ["False", "True"]
    assert run(**{SLOW_ENV: "1:0.1"}) == ["True", "False"]
