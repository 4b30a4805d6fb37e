"""Property-based tests of the HTTP port (hypothesis): random infer bodies (raw bytes, random JSON,
near-valid requests with wrong shapes, datatypes, binary sizes and header lengths) always get an
answer from the expected statuses, with a JSON ``{"error"}`` body when refused; never a 500, never a
hang, and the server keeps serving. Bounded: 150 examples per property, 10 s per request."""
from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from http_helpers import MODEL, infer_json, request, scores_of

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
EXPECTED = {200, 400, 404, 413, 415}
PATHS = [f"/v2/models/{MODEL}/infer", f"/v2/models/{MODEL}/versions/1/infer", "/v2/models/nope/infer",
         f"/v2/models/{MODEL}/versions/0/infer", "/v2/models/%2e%2e/infer"]

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                         max_size=4), max_leaves=20)
dims = st.one_of(st.integers(-2, 40), st.sampled_from([3, 32, 2 ** 40, 2 ** 63]))


@st.composite
def near_valid(draw) -> tuple[bytes, dict]:
    """A request close to a valid one: each part right or wrong as drawn."""
    shape = draw(st.one_of(st.just([1, 3, 32, 32]), st.lists(dims, max_size=5)))
    datatype = draw(st.sampled_from(["FP32", "FP32", "BYTES", "INT8", "fp32", ""]))
    tensor = {"name": draw(st.sampled_from(["input", "input", "x"])), "datatype": datatype, "shape": shape}
    count = int(np.prod(shape)) if shape and all(0 < d <= 4096 for d in shape) else 0
    binary = b""
    if draw(st.booleans()):
        size = 4 * count if count and count <= 3 * 3072 and draw(st.booleans()) else draw(st.integers(0, 5000))
        binary = draw(st.binary(min_size=min(size, 5000), max_size=min(size, 5000)))
        tensor["parameters"] = {"binary_data_size": draw(st.sampled_from([len(binary), len(binary) + 1,
                                                                          max(0, len(binary) - 4), -1]))}
    else:
        tensor["data"] = draw(st.one_of(st.just(list(np.zeros(count, dtype=float))) if count <= 3 * 3072
                                        else st.just([]), st.lists(st.floats(allow_nan=True), max_size=20), json_values))
    head = json.dumps({"inputs": [tensor], **draw(st.fixed_dictionaries(
        {}, optional={"id": st.text(max_size=10), "parameters": st.dictionaries(
            st.sampled_from(["timeout", "binary_data_output", "priority"]), json_values, max_size=3),
            "outputs": st.lists(st.fixed_dictionaries({"name": st.sampled_from(["scores", "probs"])}), max_size=2)}))})
    head = head.encode()
    headers = {}
    if binary or draw(st.booleans()):
        headers["Inference-Header-Content-Length"] = draw(st.sampled_from(
            [str(len(head)), str(len(head) + 3), "-1", "abc", str(2 ** 70)]))
    return head + binary, headers


def check(server, path: str, body: bytes, headers: dict) -> None:
    reply = request(server.http_port, "POST", path, body, headers, timeout=10)
    assert reply.status in EXPECTED, (reply.status, reply.body[:300])
    if reply.status != 200:
        assert isinstance(reply.error, str) and reply.error


@FUZZ
@given(path=st.sampled_from(PATHS), body=st.binary(max_size=3000))
def test_random_bytes(server, path, body):
    check(server, path, body, {})


@FUZZ
@given(path=st.sampled_from(PATHS), value=json_values)
def test_random_json(server, path, value):
    check(server, path, json.dumps(value).encode(), {"Content-Type": "application/json"})


@FUZZ
@given(path=st.sampled_from(PATHS), case=near_valid())
def test_near_valid_requests(server, path, case):
    check(server, path, *case)


def test_still_serving_after_the_fuzzing(server, reference):
    x = np.random.default_rng(9).standard_normal((2, 3, 32, 32)).astype(np.float32)
    reply = request(server.http_port, "POST", f"/v2/models/{MODEL}/infer", infer_json(x))
    assert reply.status == 200
    np.testing.assert_allclose(scores_of(reply), reference(MODEL, x), rtol=1e-4, atol=1e-4)
