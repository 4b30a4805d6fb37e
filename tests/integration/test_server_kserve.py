"""The KServe v2 API of a real server, driven by stock clients: tritonclient's InferenceServerClient
(raw contents) and its generated GRPCInferenceService stub (typed contents), against the reference."""
from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as triton
from test_server_helpers import DEFAULT_MODELS, assert_scores, images, input_shape
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from exporter.repository import read_config
from service.timing import RequestTiming


@pytest.fixture
def client(server):
    with triton.InferenceServerClient(server.target) as c:
        yield c


@pytest.fixture
def stub(server):
    return service_pb2_grpc.GRPCInferenceServiceStub(server.channel())


def infer_input(x: np.ndarray, name: str = "input", datatype: str = "FP32") -> triton.InferInput:
    tensor = triton.InferInput(name, list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    return tensor


@pytest.mark.parametrize("model", DEFAULT_MODELS)
@pytest.mark.parametrize("n", [1, 4])
def test_raw_contents_equal_the_reference(client, reference, model_repo, model, n):
    x = images(n, seed=20 + n, shape=input_shape(model_repo, model))
    result = client.infer(model, [infer_input(x)], outputs=[triton.InferRequestedOutput("scores")], request_id=f"id-{n}")
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == (model, "1", f"id-{n}")
    assert len(response.raw_output_contents) == 1  # answered raw, as asked
    scores = result.as_numpy("scores")
    assert scores.shape == (n, len(read_config(model_repo / model)["labels"])) and scores.dtype == np.float32
    assert_scores(scores, reference(model, x))


@pytest.mark.parametrize("model", DEFAULT_MODELS)
def test_typed_contents_are_answered_typed_and_equal_the_reference(stub, reference, model_repo, model):
    x = images(3, seed=30, shape=input_shape(model_repo, model))
    classes = len(read_config(model_repo / model)["labels"])
    request = service_pb2.ModelInferRequest(model_name=model, model_version="1", id="typed")
    tensor = request.inputs.add(name="input", datatype="FP32", shape=x.shape)
    tensor.contents.fp32_contents.extend(x.ravel().tolist())
    response, call = stub.ModelInfer.with_call(request, timeout=30)
    assert response.id == "typed" and not response.raw_output_contents
    timing = RequestTiming.parse(dict(call.trailing_metadata())["server-timing"])  # where its time went
    assert 0 <= timing.queue_s and 0 < timing.compute_s and timing.queue_s + timing.compute_s <= timing.total_s + 1e-5
    (output,) = response.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("scores", "FP32", [3, classes])
    assert_scores(np.array(output.contents.fp32_contents, dtype=np.float32).reshape(3, classes), reference(model, x))


def test_server_and_model_metadata(client, model_repo):
    assert client.is_server_live() and client.is_server_ready()
    server = client.get_server_metadata()
    assert server.name == "convnet-serve" and server.version
    for model in DEFAULT_MODELS:
        config = read_config(model_repo / model)
        assert client.is_model_ready(model) and client.is_model_ready(model, "1")
        meta = client.get_model_metadata(model)
        assert (meta.name, list(meta.versions), meta.platform) == (model, ["1"], "onnxruntime_onnx")
        assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("input", "FP32", [-1, *config["input"]["shape"]])]
        assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [("scores", "FP32", [-1, *config["output"]["shape"]])]


def kserve_error(call, *args, **kwargs) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call(*args, **kwargs)
    return info.value


@pytest.mark.parametrize("make_call, status, words", [
    (lambda c: c.infer("no-such-model", [infer_input(images(1, 0))]), "NOT_FOUND", ["no-such-model"]),
    (lambda c: c.infer("cifar-tiny", [infer_input(images(1, 0))], model_version="7"), "NOT_FOUND", ["version 7"]),
    (lambda c: c.infer("cifar-tiny", [infer_input(images(1, 0))], model_version="x"), "INVALID_ARGUMENT", ["model_version"]),
    (lambda c: c.infer("cifar-tiny", [infer_input(images(1, 0), name="pixels")]), "INVALID_ARGUMENT",
     ["inputs[0].name", "'input'", "'pixels'"]),
    (lambda c: c.infer("cifar-tiny", [infer_input(images(1, 0).astype(np.float64), datatype="FP64")]), "INVALID_ARGUMENT",
     ["inputs[0].datatype", "'FP32'", "'FP64'"]),
    (lambda c: c.infer("cifar-tiny", [infer_input(images(1, 0, shape=(3, 32, 31)))]), "INVALID_ARGUMENT",
     ["inputs[0].shape", "[1, 3, 32, 31]"]),
    (lambda c: c.infer("cifar-tiny", [infer_input(images(1, 0))], outputs=[triton.InferRequestedOutput("probs")]),
     "INVALID_ARGUMENT", ["outputs[0].name", "'scores'", "'probs'"]),
    (lambda c: c.infer("cifar-tiny", [infer_input(images(65, 0))]), "INVALID_ARGUMENT", ["max_batch_size=64"]),
    (lambda c: c.infer("cifar-tiny", []), "INVALID_ARGUMENT", ["inputs", "exactly 1", "received 0"]),
    (lambda c: c.is_model_ready("no-such-model"), "NOT_FOUND", ["no-such-model"]),
], ids=["unknown-model", "unknown-version", "bad-version", "input-name", "dtype", "shape", "output-name", "too-large",
        "no-input", "ready-unknown"])
def test_bad_requests_through_tritonclient(client, make_call, status, words):
    err = kserve_error(make_call, client)
    assert err.status() == f"StatusCode.{status}", err.message()
    for word in words:
        assert word in err.message()


def test_raw_byte_length_and_mixed_contents_are_rejected(stub):
    request = service_pb2.ModelInferRequest(model_name="cifar-tiny")
    request.inputs.add(name="input", datatype="FP32", shape=[1, 3, 32, 32])
    request.raw_input_contents.append(b"\0" * 1000)
    with pytest.raises(Exception) as info:
        stub.ModelInfer(request, timeout=10)
    assert info.value.code().name == "INVALID_ARGUMENT"
    assert "raw_input_contents[0]" in info.value.details() and "12288 bytes" in info.value.details()
    request.raw_input_contents[0] = images(1, 0).tobytes()
    request.inputs[0].contents.fp32_contents.append(1.0)
    with pytest.raises(Exception) as info:
        stub.ModelInfer(request, timeout=10)
    assert "inputs[0].contents" in info.value.details() and "both" in info.value.details()
