"""The own API (convnet.v1.Classifier) of a real server process, against the NumPy reference."""
from __future__ import annotations

import json
import subprocess
import sys

import grpc
import numpy as np
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from test_server_helpers import (DEFAULT_MODELS, assert_scores, encode, images, input_shape, preprocess_with_pillow,
                                 reply_scores, softmax, tensor)

from exporter.repository import read_config
from service.generated.convnet.v1 import convnet_pb2 as pb
from service.generated.convnet.v1 import convnet_pb2_grpc


@pytest.fixture
def stub(server):
    return convnet_pb2_grpc.ClassifierStub(server.channel())


def error_of(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value


@pytest.mark.parametrize("model", DEFAULT_MODELS)
@pytest.mark.parametrize("n", [1, 5])
def test_classify_tensor_equals_the_reference(stub, reference, model_repo, model, n):
    x = images(n, seed=n, shape=input_shape(model_repo, model))
    reply = stub.Classify(pb.ClassifyRequest(model=model, tensor=tensor(x), request_id="r-1", top_k=3), timeout=30)
    expected = reference(model, x)
    assert (reply.model, reply.version, reply.request_id) == (model, 1, "r-1")
    assert_scores(reply_scores(reply), expected)
    probabilities = softmax(expected.astype(np.float64))
    for result, p in zip(reply.results, probabilities):
        order = np.argsort(-p, kind="stable")[:3]
        assert [t.index for t in result.top] == list(order)
        np.testing.assert_allclose([t.probability for t in result.top], p[order], atol=1e-5)


def test_classify_encoded_png_and_jpeg_equals_pillow_preprocessing_then_reference(stub, reference, model_repo):
    rng = np.random.default_rng(7)
    files = [
        encode(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), "PNG"),      # colour, larger, not square
        encode(rng.integers(0, 256, (20, 20), dtype=np.uint8), "PNG"),         # gray, smaller
        encode(rng.integers(0, 256, (32, 32, 4), dtype=np.uint8), "PNG"),      # with alpha
        encode(rng.integers(0, 256, (64, 48, 3), dtype=np.uint8), "JPEG", quality=90),
    ]
    for model in DEFAULT_MODELS:
        config = read_config(model_repo / model)
        reply = stub.Classify(pb.ClassifyRequest(model=model, images=pb.EncodedImages(images=files)), timeout=30)
        x = np.concatenate([preprocess_with_pillow(f, config) for f in files])
        assert_scores(reply_scores(reply), reference(model, x))
        assert [t.label for t in reply.results[0].top] == [config["labels"][t.index] for t in reply.results[0].top]


def test_stream_answers_every_request_by_id_with_its_own_scores(stub, reference, model_repo):
    sizes = [1, 3, 2, 1, 4, 1, 2, 5, 1, 1] * 3
    models = {f"req-{i}": DEFAULT_MODELS[i % len(DEFAULT_MODELS)] for i in range(len(sizes))}
    xs = {rid: images(k, seed=100 + i, shape=input_shape(model_repo, models[rid]))
          for i, (rid, k) in enumerate(zip(models, sizes))}
    requests = [pb.ClassifyRequest(model=models[rid], tensor=tensor(x), request_id=rid) for rid, x in xs.items()]
    bad = pb.ClassifyRequest(model="cifar-tiny", tensor=tensor(images(1, seed=0, shape=(3, 16, 16))), request_id="bad")
    requests.insert(7, bad)
    replies = {r.request_id: r for r in stub.ClassifyStream(iter(requests), timeout=60)}
    assert set(replies) == set(xs) | {"bad"}
    assert replies["bad"].error.code_name == "INVALID_ARGUMENT" and "tensor.shape" in replies["bad"].error.message
    assert replies["bad"].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    for rid, x in xs.items():
        assert not replies[rid].HasField("error")
        assert replies[rid].model == models[rid]
        assert_scores(reply_scores(replies[rid]), reference(models[rid], x))


def test_list_models_and_model_info_describe_the_repository(stub, model_repo):
    listed = {m.name: m for m in stub.ListModels(pb.ListModelsRequest(), timeout=10).models}
    assert set(DEFAULT_MODELS) <= set(listed)
    for model in DEFAULT_MODELS:
        config = read_config(model_repo / model)
        info = stub.GetModelInfo(pb.GetModelInfoRequest(model=model), timeout=10)
        assert info == listed[model]
        assert info.ready and info.not_ready_reason == "" and info.default_version == 1 and info.version == 1
        assert [(v.version, v.ready) for v in info.versions] == [(1, True)]
        assert list(info.labels) == config["labels"]
        assert (info.input.name, list(info.input.shape), info.input.layout) == ("input", config["input"]["shape"], "NCHW")
        assert (info.output.name, list(info.output.shape)) == ("scores", config["output"]["shape"])
        assert info.batching.max_batch_size == config["batching"]["max_batch_size"]
        assert info.batching.max_queue_size == config["batching"]["max_queue_size"]
        assert list(info.execution_providers) == ["CPUExecutionProvider"]
        assert info.preprocessing.color == config["preprocessing"]["color"]
        assert list(info.preprocessing.resize) == config["preprocessing"]["resize"]


@pytest.mark.parametrize("request_, code, words", [
    (pb.ClassifyRequest(model="no-such-model", tensor=tensor(images(1, 0))), "NOT_FOUND", ["no-such-model", "cifar-tiny"]),
    (pb.ClassifyRequest(model="cifar-tiny", version=7, tensor=tensor(images(1, 0))), "NOT_FOUND", ["version 7", "available: 1"]),
    (pb.ClassifyRequest(model="cifar-tiny", version=-1, tensor=tensor(images(1, 0))), "INVALID_ARGUMENT", ["version", "-1"]),
    (pb.ClassifyRequest(model="cifar-tiny"), "INVALID_ARGUMENT", ["input", "neither"]),
    (pb.ClassifyRequest(model="cifar-tiny", tensor=tensor(images(2, 0, shape=(3, 28, 28)))), "INVALID_ARGUMENT",
     ["tensor.shape", "[N, 3, 32, 32]", "[2, 3, 28, 28]"]),
    (pb.ClassifyRequest(model="cifar-tiny", tensor=pb.Tensor(shape=[3, 32, 32], data=b""),), "INVALID_ARGUMENT",
     ["tensor.shape", "3 dimensions"]),
    (pb.ClassifyRequest(model="cifar-tiny", tensor=pb.Tensor(shape=[0, 3, 32, 32], data=b"")), "INVALID_ARGUMENT",
     ["tensor.shape[0]", "at least 1", "received 0"]),
    (pb.ClassifyRequest(model="cifar-tiny", tensor=pb.Tensor(shape=[1, 3, 32, 32], data=b"\0" * 100)), "INVALID_ARGUMENT",
     ["tensor.data", "12288 bytes", "received 100"]),
    (pb.ClassifyRequest(model="cifar-tiny", tensor=tensor(images(65, 0))), "INVALID_ARGUMENT",
     ["max_batch_size=64", "received 65"]),
    (pb.ClassifyRequest(model="cifar-tiny", images=pb.EncodedImages(images=[b"not an image at all"])), "INVALID_ARGUMENT",
     ["images.images[0]", "PNG or JPEG"]),
    (pb.ClassifyRequest(model="cifar-tiny", images=pb.EncodedImages()), "INVALID_ARGUMENT",
     ["images.images", "at least 1 image"]),
], ids=["unknown-model", "unknown-version", "negative-version", "no-input", "wrong-shape", "wrong-rank", "empty-batch",
        "byte-length", "too-many-images", "undecodable-image", "no-images"])
def test_bad_requests_get_the_right_status_and_a_message_naming_the_field(stub, request_, code, words):
    err = error_of(stub.Classify, request_, timeout=10)
    assert err.code().name == code, err.details()
    for word in words:
        assert word in err.details()


def test_non_finite_values_are_rejected_naming_the_position(stub):
    x = images(2, seed=3)
    x[1, 2, 3, 4] = np.nan
    err = error_of(stub.Classify, pb.ClassifyRequest(model="cifar-tiny", tensor=tensor(x)), timeout=10)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tensor.data" in err.details() and "[1, 2, 3, 4]" in err.details() and "nan" in err.details()


def test_non_finite_values_pass_when_allowed(start_server):
    server = start_server("--allow-non-finite")
    x = images(1, seed=3)
    x[0, 0, 0, 0] = np.inf
    reply = convnet_pb2_grpc.ClassifierStub(server.channel()).Classify(
        pb.ClassifyRequest(model="cifar-tiny", tensor=tensor(x)), timeout=10)
    assert len(reply.results) == 1


def test_message_over_the_size_limit_is_resource_exhausted(start_server):
    server = start_server("--max-message-bytes", "65536")
    stub = convnet_pb2_grpc.ClassifierStub(server.channel())
    x = images(8, seed=0)  # 98 kB of pixels
    err = error_of(stub.Classify, pb.ClassifyRequest(model="cifar-tiny", tensor=tensor(x)), timeout=10)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(stub.Classify(pb.ClassifyRequest(model="cifar-tiny", tensor=tensor(x[:2])), timeout=10).results) == 2


def test_health_overall_and_per_model_and_reflection(server):
    assert server.health("") == "SERVING"
    for model in DEFAULT_MODELS:
        assert server.health(model) == "SERVING"
    with pytest.raises(grpc.RpcError) as info:
        server.health("no-such-model")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    stub = reflection_pb2_grpc.ServerReflectionStub(server.channel())
    replies = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
    names = {s.name for s in replies[0].list_services_response.service}
    assert {"convnet.v1.Classifier", "inference.GRPCInferenceService", "grpc.health.v1.Health"} <= names


def test_classify_cli_prints_top5_and_latency_per_image(server, reference, model_repo, tmp_path):
    rng = np.random.default_rng(11)
    paths = []
    for i, (shape, fmt) in enumerate([((30, 30, 3), "PNG"), ((50, 40), "JPEG")]):
        path = tmp_path / f"image{i}.{fmt.lower()}"
        path.write_bytes(encode(rng.integers(0, 256, shape, dtype=np.uint8), fmt))
        paths.append(path)
    result = subprocess.run([sys.executable, "-m", "service", "classify", "--target", server.target, "--model",
                             "cifar-vgg", "--json", *map(str, paths)], capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    config = read_config(model_repo / "cifar-vgg")
    assert [line["image"] for line in lines] == [str(p) for p in paths]
    for line, path in zip(lines, paths):
        p = softmax(reference("cifar-vgg", preprocess_with_pillow(path.read_bytes(), config)).astype(np.float64))[0]
        order = np.argsort(-p, kind="stable")[:5]
        assert [t["label"] for t in line["top"]] == [config["labels"][i] for i in order]
        np.testing.assert_allclose([t["probability"] for t in line["top"]], p[order], atol=1e-5)
        assert line["latency_ms"] > 0
    text = subprocess.run([sys.executable, "-m", "service", "classify", "--target", server.target, "--random", "2"],
                          capture_output=True, text=True, timeout=540)
    assert text.returncode == 0, text.stderr
    assert text.stdout.count(" ms)") == 2 and text.stdout.count("  5. ") == 2
