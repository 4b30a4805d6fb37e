"""Where an infer body's JSON is parsed: on the event loop when small, in a worker process when large.

Parsing JSON and turning its numbers into an array hold the GIL for the whole call (orjson parses a
37 MB body in about a second on this machine), so a thread would stall the event loop that serves
gRPC as much as the loop itself. A JSON header over ``INLINE_BYTES`` is therefore parsed, and its
FP32 ``data`` converted to float32, in a small pool of worker processes (started by forkserver on the
first large body: a fork of a process running gRPC is unsafe); the loop only waits on a pipe. Small
headers, the common case, parse inline in well under a millisecond.
"""
from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from ..errors import InvalidInput
from .codec import FloatValues, InferBody, float_values, header_length, parse_header, parse_request

INLINE_BYTES = 256 * 1024
"""JSON headers up to this size parse on the loop (a few milliseconds at most)."""
WORKERS = 2


def parse_and_convert(header_bytes: bytes) -> Any:
    """The parsed header with each well-formed FP32 input's ``data`` already a FloatValues (in a worker)."""
    header = parse_header(header_bytes)
    inputs = header.get("inputs") if isinstance(header, dict) else None
    for i, raw in enumerate(inputs if isinstance(inputs, list) else ()):
        if isinstance(raw, dict) and raw.get("datatype") == "FP32" and isinstance(raw.get("data"), list):
            shape = raw.get("shape")
            shape = tuple(shape) if isinstance(shape, list) else ()
            try:
                raw["data"] = FloatValues(values=float_values(raw["data"], shape, f"inputs[{i}].data"))
            except InvalidInput as exc:
                raw["data"] = FloatValues(error=exc)
    return header


class BodyParser:
    """Parses infer bodies where they cannot stall the loop; ``close`` ends the worker processes."""

    def __init__(self, workers: int = WORKERS):
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    async def parse(self, body: bytes, length_header: str | None) -> InferBody:
        size = header_length(length_header, len(body))
        if size <= INLINE_BYTES:
            return parse_request(body, length_header)
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("forkserver"))
        header = await asyncio.get_running_loop().run_in_executor(self._pool, parse_and_convert, bytes(body[:size]))
        return parse_request(body, length_header, header)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
