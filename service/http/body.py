"""Reading a request body within the limits: its content type and encoding, ``max_message_bytes``
and a time limit, decompressed as it arrives.

aiohttp's own decompression is off (``auto_decompress=False``): a gzip bomb would inflate chunk by
chunk far past the limit before anything counted it. Here each arriving chunk is inflated in the
decoder threads (zlib releases the GIL) with at most the bytes still allowed as output, so memory
stays within the limit and a chunk. Each refusal is an HttpError with a 400-class status and a
message naming what was expected and what came: 413 for a body (announced, read or inflated) over
the limit, 415 for a content type or encoding the endpoint does not take, 400 for a body that is
not what its encoding says, 408 for a body that does not arrive in full in time; a client gone
before its body arrived is CANCELLED (status 499, as nginx logs it), no fault of the server.
"""
from __future__ import annotations

import asyncio
import zlib
from concurrent.futures import Executor

import grpc
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .status import HttpError

JSON = "application/json"
OCTETS = "application/octet-stream"
CURL_DEFAULT = "application/x-www-form-urlencoded"
ACCEPTED_TYPES = (JSON, OCTETS)
ENCODINGS = {"identity": 0, "gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
"""Content-Encoding -> zlib's wbits (0: none); what tritonclient sends (gzip, deflate) and no more."""
CLIENT_GONE = 499
"""The status a request whose client went away is counted with (nobody reads it)."""


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


def content_encoding(request: web.Request) -> str:
    """The body's one Content-Encoding (identity when none is given)."""
    raw = request.headers.get("Content-Encoding", "identity")
    encoding = raw.strip().lower() or "identity"
    if encoding not in ENCODINGS:
        raise HttpError(415, grpc.StatusCode.INVALID_ARGUMENT,
                        f"Content-Encoding: expected identity, gzip or deflate, received {raw[:100]!r}")
    return encoding


def too_large(limit: int, received: str) -> HttpError:
    return HttpError(413, grpc.StatusCode.RESOURCE_EXHAUSTED,
                     f"body: expected at most {limit} bytes (max_message_bytes), received {received}")


PIECE = 1024 * 1024
"""Most bytes inflated in one step: memory holds the body so far and one piece, never a whole
chunk's worth of a bomb at once."""


class Inflater:
    """One body's decompression into ``body``, bounded: at most ``limit`` bytes, in pieces."""

    def __init__(self, encoding: str, limit: int, body: bytearray):
        self.encoding = encoding
        self.limit = limit
        self.body = body
        self._zlib = zlib.decompressobj(ENCODINGS[encoding])

    def feed(self, chunk: bytes) -> None:
        """Inflate ``chunk`` onto the body; raises 413 once it would pass the limit, 400 on bad data."""
        data = chunk
        while data:
            room = self.limit - len(self.body)
            try:
                self.body += self._zlib.decompress(data, min(room + 1, PIECE))
            except zlib.error as exc:
                raise self._bad(exc) from None
            if len(self.body) > self.limit:
                raise too_large(self.limit, "more once inflated")
            data = self._zlib.unconsumed_tail

    def finish(self) -> None:
        try:
            self.body += self._zlib.flush()
        except zlib.error as exc:
            raise self._bad(exc) from None
        if not self._zlib.eof:
            raise self._bad("the compressed data ends early")
        if len(self.body) > self.limit:
            raise too_large(self.limit, "more once inflated")

    def _bad(self, why) -> HttpError:
        return HttpError(400, grpc.StatusCode.INVALID_ARGUMENT,
                         f"body: expected {self.encoding} data (Content-Encoding), received data that is not ({why})")


async def _read(request: web.Request, limit: int, encoding: str, executor: Executor | None) -> bytearray:
    loop = asyncio.get_running_loop()
    body, raw_size = bytearray(), 0
    inflater = Inflater(encoding, limit, body) if ENCODINGS[encoding] else None
    while chunk := await request.content.readany():
        raw_size += len(chunk)
        if raw_size > limit:
            raise too_large(limit, "more")
        if inflater is None:
            body += chunk
        else:
            await loop.run_in_executor(executor, inflater.feed, chunk)
    if inflater is not None:
        inflater.finish()
    return body


async def read_body(request: web.Request, limit: int, timeout_s: float,
                    executor: Executor | None = None) -> bytearray:
    """The whole body, decompressed (no copy made: a bytearray), refused early when its announced
    length is over ``limit``."""
    check_content_type(request)
    encoding = content_encoding(request)
    announced = request.content_length
    if announced is not None and announced > limit:
        raise too_large(limit, f"Content-Length {announced}")
    try:
        return await asyncio.wait_for(_read(request, limit, encoding, executor), timeout_s)
    except asyncio.TimeoutError:
        announced_text = f"the {announced} bytes of Content-Length" if announced is not None else "the whole body"
        raise HttpError(408, grpc.StatusCode.INVALID_ARGUMENT,
                        f"body: expected {announced_text} within {timeout_s:g} s (http_read_timeout_s), "
                        f"received less") from None
    except (ConnectionError, HttpProcessingError) as exc:
        if request.transport is None or request.transport.is_closing():
            raise HttpError(CLIENT_GONE, grpc.StatusCode.CANCELLED,
                            f"body: the client went away before sending all of it ({type(exc).__name__})") from None
        raise HttpError(400, grpc.StatusCode.INVALID_ARGUMENT,
                        f"body: expected a well-formed HTTP body, received {str(exc).strip()[:200] or type(exc).__name__}"
                        ) from None
