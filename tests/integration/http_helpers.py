"""Helpers of the tests/integration/test_http_*.py files (no tests here): plain HTTP requests to a
live server with the standard library, so each test sees exactly the status, headers and body."""
from __future__ import annotations

import http.client
import json
import socket
import ssl
import struct
from dataclasses import dataclass

import numpy as np

MODEL = "cifar-tiny"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)

    @property
    def error(self) -> str:
        return self.json()["error"]


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            context: ssl.SSLContext | None = None, timeout: float = 30) -> Reply:
    conn = (http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=timeout) if context
            else http.client.HTTPConnection("127.0.0.1", port, timeout=timeout))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def raw_request(port: int, data: bytes, timeout: float = 30, half_close: bool = False) -> Reply:
    """Send ``data`` as it is on a new connection; parse the one reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())


def infer_json(x: np.ndarray, name: str = "input", **extra) -> bytes:
    return json.dumps({"inputs": [{"name": name, "datatype": "FP32", "shape": list(x.shape),
                                   "data": x.ravel().tolist()}], **extra}).encode()


def infer_binary(x: np.ndarray, binary_output: bool = True) -> tuple[bytes, dict]:
    raw = np.ascontiguousarray(x, "<f4").tobytes()
    head = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape),
                                   "parameters": {"binary_data_size": len(raw)}}],
                       "outputs": [{"name": "scores", "parameters": {"binary_data": binary_output}}]}).encode()
    return head + raw, {"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"}


def infer_images(encoded: list[bytes]) -> tuple[bytes, dict]:
    """Encoded images as one binary BYTES input (4-byte little-endian length, then the bytes)."""
    blob = b"".join(struct.pack("<I", len(e)) + e for e in encoded)
    head = json.dumps({"inputs": [{"name": "input", "datatype": "BYTES", "shape": [len(encoded)],
                                   "parameters": {"binary_data_size": len(blob)}}]}).encode()
    return head + blob, {"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"}


def scores_of(reply: Reply) -> np.ndarray:
    """The ``scores`` output of a JSON or binary infer reply."""
    size = reply.headers.get("inference-header-content-length")
    head = json.loads(reply.body[:int(size)] if size else reply.body)
    (output,) = head["outputs"]
    if size:
        values = np.frombuffer(reply.body[int(size):], "<f4")
        assert values.nbytes == output["parameters"]["binary_data_size"]
    else:
        values = np.asarray(output["data"], np.float32)
    return values.reshape(output["shape"])
