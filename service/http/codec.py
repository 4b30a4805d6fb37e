"""The KServe v2 REST encodings of an infer request and reply: JSON tensors and the binary tensor
data extension, exactly as ``tritonclient.http`` writes and reads them.

A body is a JSON header optionally followed by the raw bytes of each binary input, in input order;
``Inference-Header-Content-Length`` gives the header's length and each binary input carries
``"parameters": {"binary_data_size": N}`` instead of ``data``. Replies are JSON, or JSON followed
by the raw output bytes when the request asks for binary outputs. Every check raises InvalidInput
naming the field, the expected and the received value.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from ..errors import InvalidInput

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_SIZE = "binary_data_size"
DATATYPE_SIZES = {"BOOL": 1, "UINT8": 1, "UINT16": 2, "UINT32": 4, "UINT64": 8, "INT8": 1, "INT16": 2,
                  "INT32": 4, "INT64": 8, "FP16": 2, "FP32": 4, "FP64": 8, "BYTES": 0}


@dataclass
class Tensor:
    """One input of a request: JSON ``data`` or binary bytes (exactly one of them)."""

    field: str
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Any = None
    binary: memoryview | None = None


@dataclass
class InferBody:
    """A parsed infer request, not yet checked against a model."""

    id: str | None
    parameters: dict
    inputs: list[Tensor]
    outputs: list[dict] = field(default_factory=list)

    @property
    def binary_output(self) -> bool:
        """Binary outputs when an output asks for ``binary_data``, or none is named and the request
        sets ``binary_data_output`` (what tritonclient sends when it names no outputs)."""
        if self.outputs:
            return any(o.get("parameters", {}).get("binary_data") is True for o in self.outputs)
        return self.parameters.get("binary_data_output") is True

    def priority(self) -> int:
        """The ``priority`` request parameter (0 = the default, 1 = the highest), as tritonclient sends it."""
        value = self.parameters.get("priority", 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidInput(f"parameters.priority: expected an integer >= 0 (0 = the default, 1 = the highest), "
                               f"received {value!r}")
        return value

    def timeout_s(self) -> float | None:
        """The ``timeout`` request parameter (microseconds, as tritonclient sends it) in seconds."""
        value = self.parameters.get("timeout")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidInput(f"parameters.timeout: expected an integer number of microseconds >= 0, "
                               f"received {value!r}")
        return value / 1e6 if value else None


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def _object(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise InvalidInput(f"{where}: expected a JSON object, received {_type_name(value)}")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{where}: expected a string, received {_type_name(value)}")
    return value


def header_length(value: str | None, body_size: int) -> int:
    """The JSON header's length from ``Inference-Header-Content-Length`` (all of the body without it)."""
    if value is None:
        return body_size
    text = value.strip()
    if not text.isascii() or not text.isdigit() or int(text) > body_size:
        raise InvalidInput(f"{HEADER_LENGTH}: expected the JSON header's length in bytes, 0..{body_size} "
                           f"(the body's length), received {value[:40]!r}")
    return int(text)


def parse_header(data: bytes) -> Any:
    """The JSON header (orjson: nesting deeper than its limit is invalid JSON, not a RecursionError)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        try:
            bytes(data).decode("utf-8")
        except UnicodeDecodeError as bad:
            raise InvalidInput(f"body: expected a JSON object in UTF-8, received bytes that are not UTF-8 "
                               f"({bad.reason} at byte {bad.start})") from None
        raise InvalidInput(f"body: expected a JSON object, received invalid JSON ({exc})") from None


def parse_request(body: bytes, length_header: str | None, header: Any = None) -> InferBody:
    """The JSON header and each input's data or binary bytes; binary sizes must add up to the body.
    ``header``: the JSON header already parsed elsewhere (service.http.parsing), else parsed here."""
    size = header_length(length_header, len(body))
    if header is None:
        header = parse_header(memoryview(body)[:size])
    header = _object(header, "body")
    request_id = header.get("id")
    if request_id is not None:
        _string(request_id, "id")
    parameters = _object(header.get("parameters", {}), "parameters")
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput(f"inputs: expected a non-empty array of input tensors, received "
                           f"{'an empty array' if inputs == [] else _type_name(inputs)}")
    binary = memoryview(body)[size:]
    tensors, offset = [], 0
    for i, raw in enumerate(inputs):
        tensor, used = _tensor(_object(raw, f"inputs[{i}]"), f"inputs[{i}]", binary[offset:])
        tensors.append(tensor)
        offset += used
    if offset != len(binary):
        raise InvalidInput(f"binary data: expected {offset} bytes after the JSON header (the inputs' "
                           f"{BINARY_SIZE} added up), received {len(binary)}")
    outputs = header.get("outputs", [])
    if not isinstance(outputs, list):
        raise InvalidInput(f"outputs: expected an array of requested outputs, received {_type_name(outputs)}")
    for i, output in enumerate(outputs):
        _string(_object(output, f"outputs[{i}]").get("name"), f"outputs[{i}].name")
        _object(output.get("parameters", {}), f"outputs[{i}].parameters")
    return InferBody(request_id, parameters, tensors, outputs)


def _tensor(raw: dict, where: str, rest: memoryview) -> tuple[Tensor, int]:
    """One input and the number of binary bytes it takes from ``rest``."""
    name = _string(raw.get("name"), f"{where}.name")
    datatype = _string(raw.get("datatype"), f"{where}.datatype")
    if datatype not in DATATYPE_SIZES:
        raise InvalidInput(f"{where}.datatype: expected one of {', '.join(DATATYPE_SIZES)}, received {datatype!r}")
    shape = raw.get("shape")
    if (not isinstance(shape, list) or
            not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2 ** 63 for d in shape)):
        raise InvalidInput(f"{where}.shape: expected an array of integers >= 0, received {json.dumps(shape)[:200]}")
    parameters = _object(raw.get("parameters", {}), f"{where}.parameters")
    tensor = Tensor(where, name, datatype, tuple(shape))
    size = parameters.get(BINARY_SIZE)
    if size is None:
        if "data" not in raw:
            raise InvalidInput(f"{where}: expected 'data' or parameters.{BINARY_SIZE}, received neither")
        tensor.data = raw["data"]
        return tensor, 0
    if "data" in raw:
        raise InvalidInput(f"{where}: expected either 'data' or parameters.{BINARY_SIZE}, received both")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InvalidInput(f"{where}.parameters.{BINARY_SIZE}: expected an integer >= 0, received {size!r}")
    if size > len(rest):
        raise InvalidInput(f"{where}.parameters.{BINARY_SIZE}: expected at most the {len(rest)} bytes left in "
                           f"the body, received {size}")
    tensor.binary = rest[:size]
    return tensor, size


def json_values(tensor: Tensor) -> np.ndarray:
    """A tensor's JSON ``data`` (flat, or nested as its shape) as a flat float32 array; data converted
    in advance (``FloatValues``) is taken as it is."""
    if isinstance(tensor.data, FloatValues):
        return tensor.data.result()
    return float_values(tensor.data, tensor.shape, f"{tensor.field}.data")


@dataclass
class FloatValues:
    """An FP32 input's ``data`` converted where the body was parsed: the array (or the file that holds
    it, on its way back from a worker process), or why it is not one."""

    values: np.ndarray | None = None
    error: InvalidInput | None = None
    file: str | None = None

    def result(self) -> np.ndarray:
        if self.error is not None:
            raise self.error
        return self.values


def float_values(data: Any, shape: tuple[int, ...], where: str) -> np.ndarray:
    """JSON ``data`` (flat, or nested as ``shape``) as a flat float32 array."""
    if not isinstance(data, list):
        raise InvalidInput(f"{where}: expected an array of numbers, received {_type_name(data)}")
    try:
        values = np.asarray(data)
    except ValueError:
        raise InvalidInput(f"{where}: expected a flat array or nested arrays of shape {list(shape)}, "
                           f"received ragged nested arrays") from None
    if values.dtype.kind not in "iuf":
        kind = {"b": "booleans", "U": "strings", "O": "mixed or nested values"}.get(values.dtype.kind, values.dtype)
        raise InvalidInput(f"{where}: expected numbers, received {kind}")
    if values.ndim != 1 and values.shape != tuple(shape):
        raise InvalidInput(f"{where}: expected a flat array or nested arrays of shape {list(shape)}, "
                           f"received nested arrays of shape {list(values.shape)}")
    return values.astype(np.float32, copy=False).ravel()


def byte_elements(tensor: Tensor, limit: int) -> list[bytes]:
    """A binary BYTES tensor: each element a 4-byte little-endian length and that many bytes."""
    where = f"{tensor.field}.parameters.{BINARY_SIZE}"
    if tensor.binary is None:
        raise InvalidInput(f"{tensor.field}.data: expected BYTES as binary data ({BINARY_SIZE}; each element a "
                           f"4-byte little-endian length, then the bytes), received JSON data")
    if len(tensor.shape) != 1:
        raise InvalidInput(f"{tensor.field}.shape: expected [N] (one encoded image per element), "
                           f"received {list(tensor.shape)}")
    if not 1 <= tensor.shape[0] <= limit:
        raise InvalidInput(f"{tensor.field}.shape[0]: expected 1..{limit} images (max_batch_size), "
                           f"received {tensor.shape[0]}")
    data, offset, elements = tensor.binary, 0, []
    while offset < len(data):
        if offset + 4 > len(data):
            raise InvalidInput(f"{where}: expected a 4-byte length at byte {offset}, received {len(data) - offset} bytes")
        (n,) = struct.unpack_from("<I", data, offset)
        if offset + 4 + n > len(data):
            raise InvalidInput(f"{where}: element {len(elements)} declares {n} bytes, received "
                               f"{len(data) - offset - 4}")
        elements.append(bytes(data[offset + 4:offset + 4 + n]))
        offset += 4 + n
    if len(elements) != tensor.shape[0]:
        raise InvalidInput(f"{where}: expected {tensor.shape[0]} elements (shape {list(tensor.shape)}), "
                           f"received {len(elements)}")
    return elements


def encode_reply(model: str, version: int, request_id: str | None, output_name: str, values: np.ndarray,
                 binary: bool) -> tuple[bytes, dict[str, str]]:
    """The reply body and its headers: JSON ``data``, or JSON then the raw bytes. ``values`` is the
    float scores (FP32, little-endian) or an object array of bytes (BYTES, each 4-byte length-prefixed)."""
    strings = values.dtype == object
    output: dict[str, Any] = {"name": output_name, "datatype": "BYTES" if strings else "FP32",
                              "shape": list(values.shape)}
    reply: dict[str, Any] = {"model_name": model, "model_version": str(version)}
    if request_id is not None:
        reply["id"] = request_id
    reply["outputs"] = [output]
    if not binary:
        output["data"] = [v.decode() for v in values.ravel()] if strings else values.ravel().tolist()
        return json.dumps(reply).encode(), {"Content-Type": "application/json"}
    if strings:
        raw = b"".join(struct.pack("<I", len(v)) + v for v in values.ravel())
    else:
        raw = np.ascontiguousarray(values, dtype="<f4").tobytes()
    output["parameters"] = {BINARY_SIZE: len(raw)}
    head = json.dumps(reply).encode()
    return head + raw, {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(head))}
