"""Reading a request body within the limits: its content type, ``max_message_bytes`` and a time limit.

Each refusal is an HttpError with a 400-class status and a message naming what was expected and
what came: 413 for a body (announced or read) over the limit, 415 for a content type the endpoint
does not take, 408 for a body that does not arrive in full in time (shorter than announced).
"""
from __future__ import annotations

import asyncio

import grpc
from aiohttp import web

from .status import HttpError

JSON = "application/json"
OCTETS = "application/octet-stream"
CURL_DEFAULT = "application/x-www-form-urlencoded"
ACCEPTED_TYPES = (JSON, OCTETS)


def check_content_type(request: web.Request) -> None:
    """No Content-Type (as tritonclient sends), JSON, or octets (the binary extension); also what
    ``curl -d`` sends unasked (the body is read as JSON all the same, as Triton does)."""
    raw = request.headers.get("Content-Type")
    if raw is None:
        return
    mime = raw.split(";", 1)[0].strip().lower()
    if mime not in ACCEPTED_TYPES and mime != CURL_DEFAULT:
        raise HttpError(415, grpc.StatusCode.INVALID_ARGUMENT,
                        f"Content-Type: expected {' or '.join(ACCEPTED_TYPES)}, received {raw[:100]!r}")


async def read_body(request: web.Request, limit: int, timeout_s: float) -> bytes:
    """The whole body, refused early when its announced length is over ``limit``."""
    check_content_type(request)
    announced = request.content_length
    if announced is not None and announced > limit:
        raise HttpError(413, grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"body: expected at most {limit} bytes (max_message_bytes), received Content-Length {announced}")
    try:
        return await asyncio.wait_for(request.read(), timeout_s)
    except web.HTTPRequestEntityTooLarge:
        raise HttpError(413, grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"body: expected at most {limit} bytes (max_message_bytes), received more") from None
    except asyncio.TimeoutError:
        announced_text = f"the {announced} bytes of Content-Length" if announced is not None else "the whole body"
        raise HttpError(408, grpc.StatusCode.INVALID_ARGUMENT,
                        f"body: expected {announced_text} within {timeout_s:g} s (http_read_timeout_s), "
                        f"received less") from None
