"""Property-based tests against a live server (hypothesis): random requests over the own API, the
stream, KServe v2 and raw bytes always get a status from the expected set within the call's
timeout; never INTERNAL or UNKNOWN, never a hang, and the server stays up. Bounded: 150 examples
per API, 10 s per call."""
from __future__ import annotations

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2, service_pb2_grpc

from bench.bad_inputs import png
from service.generated.convnet.v1 import convnet_pb2 as pb
from service.generated.convnet.v1 import convnet_pb2_grpc

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
TIMEOUT = 10.0
EXPECTED = {"OK", "INVALID_ARGUMENT", "NOT_FOUND", "UNAVAILABLE", "RESOURCE_EXHAUSTED"}
MODELS = ["cifar-tiny", "cifar-vgg", "", "nope", "../cifar-tiny", "cifar-tiny/1"]

names = st.one_of(st.sampled_from(MODELS), st.text(max_size=40))
dims = st.one_of(st.integers(-2, 70), st.sampled_from([3, 32, 2 ** 40, -(2 ** 63), 2 ** 63 - 1]))
shapes = st.one_of(st.lists(dims, max_size=6), st.tuples(st.integers(1, 4), st.just(3), st.just(32), st.just(32)).map(list))
versions = st.one_of(st.just(0), st.integers(-(2 ** 63), 2 ** 63 - 1))


@st.composite
def tensors(draw) -> pb.Tensor:
    shape = draw(shapes)
    count = int(np.prod(shape)) if shape and all(0 < d <= 4096 for d in shape) else 0
    if count and count <= 4 * 3072 and draw(st.booleans()):  # the right length: finite or not, as drawn
        values = draw(st.sampled_from(["normal", "random-bytes"]))
        if values == "normal":
            data = np.random.default_rng(draw(st.integers(0, 99))).standard_normal(count).astype("<f4").tobytes()
        else:
            data = draw(st.binary(min_size=4 * count, max_size=4 * count))
    else:
        data = draw(st.binary(max_size=2000))
    return pb.Tensor(shape=shape, data=data)


image_bytes = st.one_of(st.binary(max_size=200), st.sampled_from([png(np.zeros((5, 7, 3), np.uint8)),
                                                                 png(np.full((40, 30), 9, np.uint8))]))


@st.composite
def classify_requests(draw) -> pb.ClassifyRequest:
    request = pb.ClassifyRequest(model=draw(names), version=draw(versions), request_id=draw(st.text(max_size=10)),
                                 top_k=draw(st.integers(0, 2 ** 32 - 1)))
    which = draw(st.sampled_from(["tensor", "images", "none"]))
    if which == "tensor":
        request.tensor.CopyFrom(draw(tensors()))
    elif which == "images":
        request.images.images.extend(draw(st.lists(image_bytes, max_size=3)))
    return request


@st.composite
def infer_requests(draw) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=draw(names), id=draw(st.text(max_size=8)),
                                            model_version=draw(st.one_of(st.just(""), st.just("1"), st.text(max_size=6))))
    for _ in range(draw(st.integers(0, 2))):
        tensor = request.inputs.add(name=draw(st.sampled_from(["input", "x", ""])),
                                    datatype=draw(st.sampled_from(["FP32", "FP64", "INT8", "BYTES", ""])),
                                    shape=draw(shapes))
        kind = draw(st.sampled_from(["none", "fp32", "int", "bytes"]))
        if kind == "fp32":
            tensor.contents.fp32_contents.extend(draw(st.lists(st.floats(width=32), max_size=64)))
        elif kind == "int":
            tensor.contents.int_contents.extend(draw(st.lists(st.integers(-5, 5), max_size=8)))
        elif kind == "bytes":
            tensor.contents.bytes_contents.append(draw(st.binary(max_size=8)))
    for _ in range(draw(st.integers(0, 2))):
        request.raw_input_contents.append(draw(tensors()).data)
    for name in draw(st.lists(st.sampled_from(["scores", "probs", ""]), max_size=2)):
        request.outputs.add(name=name)
    if draw(st.booleans()):
        param = request.parameters["timeout"]
        choice = draw(st.sampled_from(["int64", "string", "bool"]))
        if choice == "int64":
            param.int64_param = draw(st.integers(-(2 ** 63), 2 ** 63 - 1))
        elif choice == "string":
            param.string_param = "x"
        else:
            param.bool_param = True
    return request


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.target, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        yield channel


def code_of(call) -> str:
    try:
        call()
    except grpc.RpcError as exc:
        assert exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED, f"no answer within {TIMEOUT} s"
        return exc.code().name
    return "OK"


@FUZZ
@given(request=classify_requests())
def test_random_classify_requests_always_get_an_expected_status(channel, request):
    stub = convnet_pb2_grpc.ClassifierStub(channel)
    replies = []
    code = code_of(lambda: replies.append(stub.Classify(request, timeout=TIMEOUT)))
    assert code in EXPECTED, (code, request)
    if code == "OK":
        n = request.tensor.shape[0] if request.HasField("tensor") else len(request.images.images)
        assert len(replies[0].results) == n and all(len(r.scores) == 10 for r in replies[0].results)


@FUZZ
@given(requests=st.lists(classify_requests(), min_size=1, max_size=4))
def test_random_streams_answer_every_request_once(channel, requests):
    for i, request in enumerate(requests):
        request.request_id = str(i)
    replies = []
    code = code_of(lambda: replies.extend(convnet_pb2_grpc.ClassifierStub(channel).ClassifyStream(iter(requests),
                                                                                                  timeout=TIMEOUT)))
    assert code == "OK"
    assert sorted(r.request_id for r in replies) == sorted(str(i) for i in range(len(requests)))
    assert all(r.error.code_name in EXPECTED - {"OK"} for r in replies if r.HasField("error"))


@FUZZ
@given(request=infer_requests())
def test_random_kserve_requests_always_get_an_expected_status(channel, request):
    code = code_of(lambda: service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=TIMEOUT))
    assert code in EXPECTED, (code, request)


METHODS = ["/convnet.v1.Classifier/Classify", "/convnet.v1.Classifier/GetModelInfo", "/convnet.v1.Classifier/ListModels",
           "/inference.GRPCInferenceService/ModelInfer", "/inference.GRPCInferenceService/ModelMetadata",
           "/inference.GRPCInferenceService/ModelReady"]


@FUZZ
@given(method=st.sampled_from(METHODS), data=st.binary(max_size=300))
def test_random_bytes_to_every_method_get_an_expected_status(channel, method, data):
    code = code_of(lambda: channel.unary_unary(method)(data, timeout=TIMEOUT))
    assert code in EXPECTED, (code, method, data)


def test_the_server_is_still_up_and_logged_no_unhandled_error(server, channel):
    """Runs after the property tests above (file order)."""
    assert server.process.poll() is None and server.health() == "SERVING"
    assert "Traceback" not in server.output()
