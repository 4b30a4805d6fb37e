"""The load generator's HTTP side: KServe v2 REST requests over aiohttp, shaped like gRPC channels.

``HttpChannel`` offers what the load generator uses of a grpc.aio channel (``channel_ready``,
``unary_unary(path)`` returning a bytes-in call, ``close``), so closed and open loops, timing and
the figures stay the ones the gRPC APIs use. A reply other than 200 raises ``HttpCallError``
carrying the gRPC code name of its status (the server's own table), so failures are reported
alike for every API. HTTP/1.1 carries one request per connection at a time: each channel's pool
opens as many keep-alive connections as calls are in flight on it.
"""
from __future__ import annotations

import asyncio
import json

import aiohttp
import numpy as np

from service.http.status import HTTP_STATUS

CODE_OF_STATUS = {status: code.name for code, status in HTTP_STATUS.items()}


class HttpCallError(Exception):
    """A failed HTTP call; ``code_name`` is the gRPC code name of its status (or of the failure)."""

    def __init__(self, code_name: str, message: str):
        super().__init__(message)
        self.code_name = code_name


class HttpChannel:
    """One connection pool to ``target`` (HOST:PORT) sending requests with ``headers``."""

    def __init__(self, target: str, headers: dict[str, str] | None = None):
        self.base = f"http://{target}"
        self.headers = headers or {}
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=False),
                                             skip_auto_headers=("User-Agent",))

    async def channel_ready(self) -> None:
        async with self.session.get(self.base + "/v2/health/live") as reply:
            await reply.read()

    def unary_unary(self, path: str):
        url = self.base + path

        async def call(payload: bytes, timeout: float | None = None) -> bytes:
            try:
                async with self.session.post(url, data=payload, headers=self.headers,
                                             timeout=aiohttp.ClientTimeout(total=timeout)) as reply:
                    body = await reply.read()
            except asyncio.TimeoutError:
                raise HttpCallError("DEADLINE_EXCEEDED", f"{url}: no answer within {timeout} s") from None
            except aiohttp.ClientError as exc:
                raise HttpCallError("UNAVAILABLE", f"{url}: {exc}") from None
            if reply.status != 200:
                raise HttpCallError(CODE_OF_STATUS.get(reply.status, f"HTTP_{reply.status}"),
                                    f"{url}: {reply.status}: {body[:300]!r}")
            return body

        return call

    async def close(self) -> None:
        await self.session.close()


def infer_path(model: str, version: int) -> str:
    return f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"


def request_body(x: np.ndarray, input_name: str, output_name: str, data: str) -> tuple[bytes, dict[str, str]]:
    """An infer request for ``x``: binary tensors both ways (``data="binary"``) or JSON both ways."""
    tensor = {"name": input_name, "datatype": "FP32", "shape": list(x.shape)}
    if data == "json":
        tensor["data"] = x.ravel().tolist()
        body = {"inputs": [tensor], "outputs": [{"name": output_name, "parameters": {"binary_data": False}}]}
        return json.dumps(body).encode(), {"Content-Type": "application/json"}
    raw = np.ascontiguousarray(x, "<f4").tobytes()
    tensor["parameters"] = {"binary_data_size": len(raw)}
    head = json.dumps({"inputs": [tensor],
                       "outputs": [{"name": output_name, "parameters": {"binary_data": True}}]}).encode()
    return head + raw, {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))}


async def probe_http(target: str, path: str, payload: bytes, headers: dict, timeout: float) -> tuple[list[int], int]:
    """Send the request once; the reply's output shape and its number of values (JSON or binary)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        async with session.post(f"http://{target}{path}", data=payload, headers=headers) as reply:
            body = await reply.read()
            if reply.status != 200:
                raise ValueError(f"{target}: the first request failed: {reply.status}: {body[:300]!r}")
            length = reply.headers.get("Inference-Header-Content-Length")
    head = json.loads(body[:int(length)] if length else body)
    output = head["outputs"][0]
    return output["shape"], (len(body) - int(length)) // 4 if length else len(output["data"])


async def describe_http(target: str, model: str | None, version: int, timeout: float):
    """(name, input name, output name, (C, H, W), classes) from the REST metadata; the first ready
    model of ``/api/status`` when none is named."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        if not model:
            async with session.get(f"http://{target}/api/status") as reply:
                ready = sorted(m["name"] for m in (await reply.json())["models"] if m["ready"])
            if not ready:
                raise ValueError(f"{target}: the server lists no ready model")
            model = ready[0]
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "")
        async with session.get(f"http://{target}{path}") as reply:
            meta = await reply.json()
            if reply.status != 200:
                raise ValueError(f"{target}: cannot describe model {model!r}: {reply.status}: {meta.get('error')}")
    (tensor,), (output,) = meta["inputs"], meta["outputs"]
    return meta["name"], tensor["name"], output["name"], tuple(tensor["shape"][1:]), int(output["shape"][1])
