"""KServe v2 over HTTP/REST on a live server: the stock tritonclient.http client unchanged (JSON and
binary), scores equal to the NumPy reference, encoded images as BYTES, every refusal a JSON
``{"error"}`` with the status of its gRPC code, and the requests counted under api="http"."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.http as httpclient
from http_helpers import MODEL, infer_binary, infer_images, infer_json, raw_request, request, scores_of
from test_server_helpers import assert_scores, encode, images, preprocess_with_pillow
from tritonclient.utils import InferenceServerException

from exporter.repository import read_config


@pytest.fixture(scope="module")
def client(server):
    with httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}") as c:
        yield c


def test_health_and_metadata_through_tritonclient(client, server):
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, "1") and not client.is_model_ready(MODEL, "9")
    meta = client.get_server_metadata()
    assert meta["name"] == "convnet-serve" and "binary_tensor_data" in meta["extensions"]
    model = client.get_model_metadata(MODEL)
    assert model["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 32, 32]}]
    assert model["outputs"] == [{"name": "scores", "datatype": "FP32", "shape": [-1, 10]}]
    assert model["versions"] == ["1"] and client.get_model_metadata(MODEL, "1") == model


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False, None])
def test_tritonclient_infer_matches_the_reference(client, reference, binary_in, binary_out):
    x = images(3, seed=11)
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary_in)
    outputs = None if binary_out is None else [httpclient.InferRequestedOutput("scores", binary_data=binary_out)]
    result = client.infer(MODEL, [tensor], outputs=outputs, request_id="abc", timeout=10_000_000)
    assert_scores(result.as_numpy("scores"), reference(MODEL, x))
    reply = result.get_response()
    assert (reply["model_name"], reply["model_version"], reply["id"]) == (MODEL, "1", "abc")
    binary = binary_out is not False  # None: tritonclient asks for binary outputs
    assert ("parameters" in reply["outputs"][0]) == binary and ("data" in reply["outputs"][0]) == (not binary)


def test_tritonclient_gzip_both_ways(client, reference):
    x = images(2, seed=12)
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    result = client.infer(MODEL, [tensor], request_compression_algorithm="gzip", response_compression_algorithm="gzip")
    assert_scores(result.as_numpy("scores"), reference(MODEL, x))


def test_flat_nested_json_and_binary_give_the_same_scores(server, reference):
    x = images(2, seed=13)
    nested = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 3, 32, 32],
                                     "data": x.tolist()}]}).encode()
    body, headers = infer_binary(x)
    for data, head in ((infer_json(x), {"Content-Type": "application/json"}), (nested, {}), (body, headers)):
        reply = request(server.http_port, "POST", f"/v2/models/{MODEL}/versions/1/infer", data, head)
        assert reply.status == 200, reply.body[:300]
        assert_scores(scores_of(reply), reference(MODEL, x))
        assert_server_timing(reply.headers["server-timing"])


def assert_server_timing(value: str) -> None:
    """``infer;dur=..`` first (the page shows it), then the batch queue's entries, which fit inside it."""
    from service.timing import RequestTiming

    infer = float(value.split(",")[0].removeprefix("infer;dur=")) / 1e3
    timing = RequestTiming.parse(value)
    assert 0 < timing.compute_s and 0 <= timing.queue_s, value
    assert timing.queue_s + timing.compute_s <= timing.total_s + 1e-5 <= infer + 2e-5, value


def test_encoded_images_as_bytes_are_preprocessed_as_config_json_says(server, model_repo, reference):
    rng = np.random.default_rng(5)
    files = [encode(rng.integers(0, 256, (40, 28, 3), dtype=np.uint8), "PNG"),
             encode(rng.integers(0, 256, (32, 32), dtype=np.uint8), "JPEG")]
    body, headers = infer_images(files)
    reply = request(server.http_port, "POST", f"/v2/models/{MODEL}/infer", body, headers)
    assert reply.status == 200, reply.body[:300]
    config = read_config(model_repo / MODEL)
    expected = np.concatenate([reference(MODEL, preprocess_with_pillow(f, config)) for f in files])
    assert_scores(scores_of(reply), expected)


def _bad_requests():
    x = images(1, seed=14)
    good, head = infer_binary(x)
    infer = f"/v2/models/{MODEL}/infer"
    return [
        ("POST", "/v2/models/nope/infer", infer_json(x), {}, 404, "model: no model named 'nope'"),
        ("POST", f"/v2/models/{MODEL}/versions/7/infer", infer_json(x), {}, 404, "has no version 7"),
        ("POST", f"/v2/models/{MODEL}/versions/x1/infer", infer_json(x), {}, 400, "model_version: expected"),
        ("GET", "/v2/models/nope", None, {}, 404, "no model named 'nope'"),
        ("GET", "/v2/models/nope/ready", None, {}, 404, "no model named 'nope'"),
        ("POST", infer, b"{not json", {}, 400, "body: expected a JSON object, received invalid JSON"),
        ("POST", infer, infer_json(x), {"Content-Type": "text/plain"}, 415, "Content-Type: expected application/json"),
        ("POST", infer, b"--b\r\n", {"Content-Type": "multipart/form-data; boundary=b"}, 415, "Content-Type"),
        ("POST", infer, b"a=1", {"Content-Type": "application/x-www-form-urlencoded"}, 400, "invalid JSON"),
        ("POST", infer, infer_json(images(1, 1, (3, 16, 16))), {}, 400, "inputs[0].shape: expected [N, 3, 32, 32]"),
        ("POST", infer, infer_json(x, name="image"), {}, 400, "inputs[0].name: expected 'input', received 'image'"),
        ("POST", infer, infer_json(x, outputs=[{"name": "probs"}]), {}, 400, "outputs[0].name: expected 'scores'"),
        ("POST", infer, good + b"xx", head, 400, "binary data: expected 12288 bytes after the JSON header"),
        ("POST", infer, good[:-4], head, 400, "binary_data_size: expected at most the 12284 bytes left"),
        ("POST", infer, good, {**head, "Inference-Header-Content-Length": "-3"}, 400,
         "Inference-Header-Content-Length: expected the JSON header's length"),
        ("POST", infer, infer_json(x, parameters={"timeout": "soon"}), {}, 400, "parameters.timeout: expected"),
        ("GET", infer, None, {}, 405, "Method Not Allowed"),
        ("GET", "/v3/nothing", None, {}, 404, "Not Found"),
    ]


@pytest.mark.parametrize("method, path, body, headers, status, message", _bad_requests(),
                         ids=[f"{r[4]}-{r[5][:30]}" for r in _bad_requests()])
def test_bad_requests_get_a_json_error_with_the_matching_status(server, method, path, body, headers, status, message):
    reply = request(server.http_port, method, path, body, headers)
    assert reply.status == status and reply.headers["content-type"].startswith("application/json")
    assert message in reply.error, reply.error


@pytest.mark.parametrize("head, message", [
    (b"Content-Length: -5\r\n", "Content-Length"),
    (b"Content-Length: 12abc\r\n", "Content-Length"),
    (b"Content-Length: 99999999999999999999\r\n", "400 HTTP request: Content-Length overflow"),
    (b"Content-Length: 1000000000000\r\n", "413 body: expected at most 67108864 bytes (max_message_bytes), "
                                          "received Content-Length 1000000000000"),
])
def test_malformed_or_huge_content_length_is_refused_in_json_without_reading_a_body(server, head, message):
    reply = raw_request(server.http_port, b"POST /v2/models/cifar-tiny/infer HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n")
    assert reply.status in (400, 413) and message in f"{reply.status} {reply.error}"
    assert request(server.http_port, "GET", "/v2/health/ready").status == 200


def test_http_requests_are_counted_under_their_own_api(server):
    before = {code: server.metric("convnet_requests_total", model=MODEL, api="http", code=code)
              for code in ("OK", "INVALID_ARGUMENT")}
    x = images(1, seed=15)
    assert request(server.http_port, "POST", f"/v2/models/{MODEL}/infer", infer_json(x)).status == 200
    assert request(server.http_port, "POST", f"/v2/models/{MODEL}/infer", b"{").status == 400
    assert server.metric("convnet_requests_total", model=MODEL, api="http", code="OK") == before["OK"] + 1
    assert (server.metric("convnet_requests_total", model=MODEL, api="http", code="INVALID_ARGUMENT")
            == before["INVALID_ARGUMENT"] + 1)
    assert server.metric("convnet_request_duration_seconds_count", model=MODEL, api="http") >= 2


def test_status_endpoint_and_samples(server, model_repo):
    status = request(server.http_port, "GET", "/api/status").json()
    models = {m["name"]: m for m in status["models"]}
    assert models[MODEL]["ready"] and models[MODEL]["labels"] == read_config(model_repo / MODEL)["labels"]
    assert models["digits-lenet5"]["trained"] is True and models[MODEL]["trained"] is False
    assert models["digits-lenet5"]["dataset"] == "digits"
    samples = request(server.http_port, "GET", "/samples").json()
    digits = next(s for s in samples["datasets"] if s["dataset"] == "digits")
    assert [i["label"] for i in digits["images"]] == [str(d) for d in range(10)]
    png = request(server.http_port, "GET", digits["images"][3]["url"])
    assert png.status == 200 and png.body[:8] == b"\x89PNG\r\n\x1a\n"
    page = request(server.http_port, "GET", "/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    with pytest.raises(InferenceServerException, match="no model named"):
        httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}").get_model_metadata("nope")


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_class_count_gets_the_top_classes(client, reference, model_repo, binary):
    x = images(2, seed=16)
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    result = client.infer(MODEL, [tensor], outputs=[httpclient.InferRequestedOutput("scores", binary_data=binary,
                                                                                     class_count=3)])
    got = result.as_numpy("scores")
    assert got.shape == (2, 3)
    expected = reference(MODEL, x)
    labels = read_config(model_repo / MODEL)["labels"]
    for row, scores in zip(got, expected):
        fields = [(e.decode() if isinstance(e, bytes) else e).split(":") for e in row]  # JSON gives str
        assert [int(f[1]) for f in fields] == list(np.argsort(-scores, kind="stable")[:3])
        assert [f[2] for f in fields] == [labels[int(f[1])] for f in fields]
        np.testing.assert_allclose([float(f[0]) for f in fields], np.sort(scores)[::-1][:3], atol=1e-4)
