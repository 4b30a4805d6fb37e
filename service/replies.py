"""Replies encoded straight into protobuf wire bytes from a batch's arrays: Classify replies, and
KServe ModelInfer replies with raw output contents.

Building a ``ClassifyResponse`` as protobuf objects costs a Python object and several attribute
writes per image and per top class, and gRPC then serializes it again: on single-image requests it
was the largest piece of the server's own work per request (docs/SERVICE.md). The few messages of
a reply have a fixed wire format (protos/convnet/v1/convnet.proto), so the encoder writes it: per
model version the bytes of the model, the version and every class's label and index are made
once; per reply only the request id, the scores and the top-k probabilities are new.

A raw ModelInfer reply is the same idea: per model version and output shape everything but the
request id and the score bytes is encoded once.

Classify's field numbers come from the generated descriptors, KServe's are written out (below).
tests/service/test_replies.py parses every encoding back with the protobuf library and compares
it with the message built the library's way.
"""
from __future__ import annotations

from .generated.convnet.v1 import convnet_pb2 as pb
from .scores import Scored

_VARINT, _LEN, _FIXED32 = 0, 2, 5
_ZERO_FLOAT = bytes(4)
_ONE_BYTE = [bytes((n,)) for n in range(0x80)]


def varint(n: int) -> bytes:
    """An unsigned integer as a protobuf base-128 varint."""
    if n < 0x80:
        return _ONE_BYTE[n]
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _key(message, name: str, wire_type: int) -> bytes:
    return varint(message.DESCRIPTOR.fields_by_name[name].number << 3 | wire_type)


def _delimited(key: bytes, payload: bytes) -> bytes:
    return key + varint(len(payload)) + payload


def _string(message, name: str, value: str) -> bytes:
    """A proto3 string field; the empty string, its default, is left out as protobuf does."""
    return _delimited(_key(message, name, _LEN), value.encode()) if value else b""


def _unsigned(message, name: str, value: int) -> bytes:
    """A proto3 integer field holding ``value`` >= 0; 0, its default, is left out."""
    return _key(message, name, _VARINT) + varint(value) if value else b""


_REQUEST_ID = _key(pb.ClassifyResponse, "request_id", _LEN)
_RESULT = _key(pb.ClassifyResponse, "results", _LEN)
_SCORES = _key(pb.Classification, "scores", _LEN)
_TOP = _key(pb.Classification, "top", _LEN)
_PROBABILITY = _key(pb.LabelProbability, "probability", _FIXED32)


class ReplyEncoder:
    """Encodes the ClassifyResponse of one model version (its name, version and labels)."""

    def __init__(self, model: str, version: int, labels: tuple[str, ...]):
        self.labels = labels
        self._model_version = (_string(pb.ClassifyResponse, "model", model)
                               + _unsigned(pb.ClassifyResponse, "version", version))
        self._row_bytes = 4 * len(labels)  # one row of float32 scores or probabilities
        self._scores_head = _SCORES + varint(self._row_bytes)
        self._top_head: list[bytes] = []  # the entry of class i up to its probability's 4 bytes
        self._top_zero: list[bytes] = []  # the whole entry of class i with probability 0 (left out)
        for i, label in enumerate(labels):
            fixed = _string(pb.LabelProbability, "label", label) + _unsigned(pb.LabelProbability, "index", i)
            self._top_head.append(_delimited(_TOP, fixed + _PROBABILITY + _ZERO_FLOAT)[:-4])
            self._top_zero.append(_delimited(_TOP, fixed))

    def encode(self, request_id: str, outputs: Scored, top_k: int) -> bytes:
        """The serialized reply: the request id, then per row of ``outputs`` its scores and its
        ``top_k`` most probable classes (at most all of them)."""
        scores = outputs.scores.astype("<f4", copy=False).tobytes()
        probabilities = outputs.probabilities.astype("<f4", copy=False).tobytes()
        parts = [_delimited(_REQUEST_ID, request_id.encode()) if request_id else b"", self._model_version]
        top_head, top_zero, row_bytes = self._top_head, self._top_zero, self._row_bytes
        start = 0
        for classes in outputs.ranking[:, :top_k].tolist():
            body = [self._scores_head, scores[start:start + row_bytes]]
            for i in classes:
                probability = probabilities[start + 4 * i:start + 4 * i + 4]
                body.append(top_head[i] + probability if probability != _ZERO_FLOAT else top_zero[i])
            body = b"".join(body)
            parts += (_RESULT, varint(len(body)), body)
            start += row_bytes
        return b"".join(parts)


# KServe v2's ModelInferResponse (protos/inference/grpc_service.proto): model_name 1,
# model_version 2, id 3, outputs 5, raw_output_contents 6; its InferOutputTensor: name 1,
# datatype 2, shape 3. Written as numbers, not read from the generated module, so that importing
# this module never registers the "inference" protos (tritonclient's copy may hold them in-process).
_INFER_MODEL, _INFER_VERSION = bytes((1 << 3 | _LEN,)), bytes((2 << 3 | _LEN,))
_INFER_ID = bytes((3 << 3 | _LEN,))
_INFER_OUTPUTS = bytes((5 << 3 | _LEN,))
_INFER_RAW = bytes((6 << 3 | _LEN,))
_TENSOR_NAME, _TENSOR_DATATYPE, _TENSOR_SHAPE = (bytes((n << 3 | _LEN,)) for n in (1, 2, 3))


def _text(key: bytes, value: str) -> bytes:
    return _delimited(key, value.encode()) if value else b""


class RawInferReplyEncoder:
    """Encodes the ModelInferResponse of one model version whose one output goes back as raw
    little-endian FP32 bytes (the reply to a request that sent raw input contents)."""

    def __init__(self, model: str, version: int, output_name: str):
        self._head = _text(_INFER_MODEL, model) + _text(_INFER_VERSION, str(version))
        self._name = _text(_TENSOR_NAME, output_name) + _text(_TENSOR_DATATYPE, "FP32")
        self._outputs: dict[tuple[int, ...], bytes] = {}

    def _output(self, shape: tuple[int, ...]) -> bytes:
        """The ``outputs`` entry of an output of ``shape`` (made once per shape)."""
        found = self._outputs.get(shape)
        if found is None:
            dims = b"".join(varint(d) for d in shape)
            tensor = self._name + (_delimited(_TENSOR_SHAPE, dims) if shape else b"")
            found = self._outputs[shape] = _delimited(_INFER_OUTPUTS, tensor)
        return found

    def encode(self, request_id: str, scores) -> bytes:
        """The serialized reply carrying ``scores`` (an array of any shape) for request ``request_id``."""
        data = scores.astype("<f4", copy=False).tobytes()
        return b"".join((self._head, _delimited(_INFER_ID, request_id.encode()) if request_id else b"",
                         self._output(scores.shape), _INFER_RAW, varint(len(data)), data))
