"""The REST encodings (service/http/codec.py) against tritonclient.http's own request and reply
code, and the one gRPC -> HTTP status table against the exception -> gRPC table."""
from __future__ import annotations

import json
import struct

import grpc
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.http import InferResult

from service.errors import (BatchFailed, DeadlineExceeded, InvalidInput, ModelNotFound, ModelNotReady, QueueFull,
                            ShuttingDown)
from service.http.codec import byte_elements, encode_reply, json_values, parse_request
from service.http.status import HTTP_STATUS, http_error
from service.servicers.status import STATUS


def triton_body(x: np.ndarray, binary: bool, outputs=None) -> tuple[bytes, int | None]:
    """The body and Inference-Header-Content-Length tritonclient.http sends for ``x``."""
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    body, json_size = httpclient.InferenceServerClient.generate_request_body(
        [tensor], outputs=outputs, request_id="r-7", timeout=2500, priority=2)
    return body, json_size


@pytest.mark.parametrize("binary", [True, False])
def test_parses_what_tritonclient_sends(binary):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    body, size = triton_body(x, binary)
    parsed = parse_request(body, None if size is None else str(size))
    (tensor,) = parsed.inputs
    assert (tensor.name, tensor.datatype, tensor.shape, parsed.id) == ("input", "FP32", (2, 3, 4, 4), "r-7")
    got = np.frombuffer(tensor.binary, "<f4") if binary else json_values(tensor)
    np.testing.assert_array_equal(got, x.ravel())
    assert parsed.timeout_s() == pytest.approx(0.0025) and parsed.priority() == 2
    assert parsed.binary_output  # no outputs named: tritonclient asks for binary outputs


def test_outputs_named_without_binary_data_are_json():
    x = np.zeros((1, 3, 4, 4), np.float32)
    body, size = triton_body(x, True, outputs=[httpclient.InferRequestedOutput("scores", binary_data=False)])
    assert not parse_request(body, str(size)).binary_output
    body, size = triton_body(x, True, outputs=[httpclient.InferRequestedOutput("scores", binary_data=True)])
    assert parse_request(body, str(size)).binary_output


@pytest.mark.parametrize("binary", [True, False])
def test_replies_read_back_by_tritonclient(binary):
    scores = np.arange(20, dtype=np.float32).reshape(2, 10) / 7
    data, headers = encode_reply("m", 3, "id-1", "scores", scores, binary)
    result = InferResult.from_response_body(data, header_length=headers.get("Inference-Header-Content-Length") and
                                            int(headers["Inference-Header-Content-Length"]))
    np.testing.assert_array_equal(result.as_numpy("scores"), scores)
    reply = result.get_response()
    assert (reply["model_name"], reply["model_version"], reply["id"]) == ("m", "3", "id-1")


def test_nested_data_is_accepted_when_it_matches_the_shape():
    header = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 2, 2], "data": [[[1, 2], [3, 4.5]]]}]}
    (tensor,) = parse_request(json.dumps(header).encode(), None).inputs
    np.testing.assert_array_equal(json_values(tensor), [1, 2, 3, 4.5])


@pytest.mark.parametrize("header, length, message", [
    (b"{bad", None, "body: expected a JSON object, received invalid JSON"),
    (b"[1, 2]", None, "body: expected a JSON object, received an array"),
    (b'{"id": "\xff"}', None, "not UTF-8"),
    (b'{"inputs": []}', None, "inputs: expected a non-empty array"),
    (b'{"inputs": [{"name": "input", "datatype": "FP99", "shape": [1], "data": [1]}]}', None,
     "inputs[0].datatype: expected one of"),
    (b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1], "data": [1]}]}', None,
     "inputs[0].shape: expected an array of integers >= 0"),
    (b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1]}]}', None,
     "expected 'data' or parameters.binary_data_size, received neither"),
    (b'{"inputs": [{"name": "i", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 8}}]}', "-",
     "Inference-Header-Content-Length: expected the JSON header's length"),
])
def test_malformed_requests_name_the_field(header, length, message):
    with pytest.raises(InvalidInput) as caught:
        parse_request(header, length)
    assert message in str(caught.value)


def test_binary_sizes_must_add_up_to_the_body():
    head = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [2],
                                   "parameters": {"binary_data_size": 8}}]}).encode()
    assert np.frombuffer(parse_request(head + bytes(8), str(len(head))).inputs[0].binary, "<f4").size == 2
    with pytest.raises(InvalidInput, match=r"binary_data_size: expected at most the 4 bytes left in the body, received 8"):
        parse_request(head + bytes(4), str(len(head)))
    with pytest.raises(InvalidInput, match=r"binary data: expected 8 bytes after the JSON header .*, received 12"):
        parse_request(head + bytes(12), str(len(head)))
    with pytest.raises(InvalidInput, match=r"Inference-Header-Content-Length: expected .* 0\.\.\d+ .*received '99999'"):
        parse_request(head + bytes(8), "99999")


def test_json_data_of_the_wrong_kind_is_refused():
    for data, message in (([[1, 2], [3]], "ragged"), (["1"], "strings"), ([True], "booleans"), ([[1, 2]], r"shape \[1, 2\]")):
        header = {"inputs": [{"name": "i", "datatype": "FP32", "shape": [2, 1], "data": data}]}
        with pytest.raises(InvalidInput, match=message):
            json_values(parse_request(json.dumps(header).encode(), None).inputs[0])


def test_bytes_elements_are_length_prefixed():
    blob = b"".join(struct.pack("<I", len(e)) + e for e in (b"png-1", b"", b"x" * 300))
    head = json.dumps({"inputs": [{"name": "input", "datatype": "BYTES", "shape": [3],
                                   "parameters": {"binary_data_size": len(blob)}}]}).encode()
    tensor = parse_request(head + blob, str(len(head))).inputs[0]
    assert byte_elements(tensor, 8) == [b"png-1", b"", b"x" * 300]
    with pytest.raises(InvalidInput, match=r"shape\[0\]: expected 1..2 images"):
        byte_elements(tensor, 2)
    tensor.binary = tensor.binary[:-1]
    with pytest.raises(InvalidInput, match="element 2 declares 300 bytes, received 299"):
        byte_elements(tensor, 8)


def test_every_service_error_has_one_http_status():
    assert set(STATUS.values()) <= set(HTTP_STATUS)
    expected = {InvalidInput: 400, ModelNotFound: 404, ModelNotReady: 503, ShuttingDown: 503, QueueFull: 429,
                DeadlineExceeded: 504}
    for kind, status in expected.items():
        got, code, message = http_error(kind("why"))
        assert (got, code, message) == (status, STATUS[kind], "why")
    assert http_error(BatchFailed("boom", "abc"))[:2] == (500, grpc.StatusCode.INTERNAL)
    status, code, message = http_error(KeyError("x"))
    assert (status, code) == (500, grpc.StatusCode.INTERNAL) and "error id" in message


def test_classification_strings_read_back_by_tritonclient():
    from service.http.classification import requested_classes, top_classes

    scores = np.array([[0.5, 2.0, -1.0, 2.0], [3.0, 0.0, 1.0, 2.0]], np.float32)
    top = top_classes(scores, 2, ("a", "b", "c", "d"))
    for binary in (True, False):
        data, headers = encode_reply("m", 1, None, "scores", top, binary)
        length = headers.get("Inference-Header-Content-Length")
        got = InferResult.from_response_body(data, header_length=length and int(length)).as_numpy("scores")
        assert [[v.decode() if isinstance(v, bytes) else v for v in row] for row in got] == [
            ["2.000000:1:b", "2.000000:3:d"], ["3.000000:0:a", "2.000000:3:d"]]
    body = parse_request(json.dumps({"inputs": [{"name": "i", "datatype": "FP32", "shape": [1], "data": [1]}],
                                     "outputs": [{"name": "scores", "parameters": {"classification": 3}}]}).encode(), None)
    assert requested_classes(body, (10,)) == 3
    with pytest.raises(InvalidInput, match=r"classification: expected a model whose output is one score per class"):
        requested_classes(body, (10, -1, -1))
    body.outputs[0]["parameters"]["classification"] = 0
    with pytest.raises(InvalidInput, match=r"outputs\[0\]\.parameters\.classification: expected an integer >= 1"):
        requested_classes(body, (10,))


def test_a_large_json_header_parses_in_a_worker_process_to_the_same_request():
    """service.http.parsing: a header over INLINE_BYTES goes to a worker process and its FP32 data
    comes back as the same float32 values the inline path gives; a ragged one keeps its error."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from service.http.codec import json_values, parse_request
    from service.http.parsing import INLINE_BYTES, SCRATCH, BodyParser

    x = np.random.default_rng(3).standard_normal((30, 3, 32, 32)).astype(np.float32)
    body = json.dumps({"id": "big", "inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape),
                                                "data": x.tolist()}]}).encode()
    ragged = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 2],
                                     "data": [[1.0] * 60000, [2.0]]}]}).encode()
    assert len(body) > INLINE_BYTES and len(ragged) > INLINE_BYTES

    async def parse_both():
        parser = BodyParser(ThreadPoolExecutor(1))
        try:
            return await parser.parse(body, None), await parser.parse(ragged, None)
        finally:
            parser.close()

    before = set(SCRATCH.glob("convnet-body-*"))
    parsed, bad = asyncio.run(parse_both())
    inline = parse_request(body, None)
    assert parsed.id == "big" and parsed.inputs[0].shape == x.shape
    np.testing.assert_array_equal(json_values(parsed.inputs[0]), json_values(inline.inputs[0]))
    np.testing.assert_array_equal(json_values(parsed.inputs[0]), x.ravel())
    with pytest.raises(InvalidInput, match="ragged nested arrays"):
        json_values(bad.inputs[0])
    assert set(SCRATCH.glob("convnet-body-*")) == before
