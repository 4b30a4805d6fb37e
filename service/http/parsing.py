"""Where an infer body's JSON is parsed: on the event loop when small, in a worker process when large.

Parsing JSON and turning its numbers into an array hold the GIL for the whole call (orjson parses a
37 MB body in about a second here), so a thread would stall the event loop that serves gRPC as
much as the loop itself. A JSON header over ``INLINE_BYTES`` is therefore parsed, and its FP32
``data`` converted to float32, in a small pool of worker processes (started by forkserver on the
first large body, off the loop, since forking a process that runs gRPC is unsafe; at a lower CPU
priority).
Even copying tens of megabytes under the GIL takes 100 ms and more on a loaded machine, so nothing
large is pickled: the header goes to the worker, and the arrays come back, as files on a RAM disk
written and read by the decoder threads (the system calls run without the GIL). Small headers, the
common case, parse inline in well under a millisecond.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import os
import tempfile
import uuid
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInput
from .codec import FloatValues, InferBody, float_values, header_length, parse_header, parse_request

INLINE_BYTES = 256 * 1024
"""JSON headers up to this size parse on the loop (a few milliseconds at most)."""
WORKERS = 2
NICENESS = 10
"""The workers run at a lower CPU priority: a large body is parsed with what the callers leave over."""
SCRATCH = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else Path(tempfile.gettempdir())


def parse_file(path: str) -> Any:
    """The parsed header of the JSON in ``path``, each well-formed FP32 input's ``data`` converted and
    written to ``path.<i>`` (a FloatValues naming the file); runs in a worker process."""
    header = parse_header(Path(path).read_bytes())
    inputs = header.get("inputs") if isinstance(header, dict) else None
    for i, raw in enumerate(inputs if isinstance(inputs, list) else ()):
        if isinstance(raw, dict) and raw.get("datatype") == "FP32" and isinstance(raw.get("data"), list):
            shape = raw.get("shape")
            try:
                values = float_values(raw["data"], tuple(shape) if isinstance(shape, list) else (), f"inputs[{i}].data")
            except InvalidInput as exc:
                raw["data"] = FloatValues(error=exc)
                continue
            values.tofile(f"{path}.{i}")
            raw["data"] = FloatValues(file=f"{path}.{i}")
    return header


def _write(path: Path, data: memoryview) -> None:
    with open(path, "wb") as out:
        out.write(data)


def _load_arrays(header: Any) -> None:
    """Replace each FloatValues file by its array (the files are removed)."""
    for raw in header.get("inputs", ()) if isinstance(header, dict) else ():
        data = raw.get("data") if isinstance(raw, dict) else None
        if isinstance(data, FloatValues) and data.file is not None:
            data.values = np.fromfile(data.file, dtype=np.float32)
            os.unlink(data.file)
            data.file = None


class BodyParser:
    """Parses infer bodies where they cannot stall the loop; ``close`` ends the worker processes."""

    def __init__(self, threads: Executor | None = None, workers: int = WORKERS):
        self.threads = threads
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._starting: asyncio.Future | None = None

    def _start(self) -> None:
        """Start the pool and every worker (a worker is otherwise started inside ``submit``)."""
        pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("forkserver"),
                                   initializer=os.nice, initargs=(NICENESS,))
        for started in [pool.submit(os.getpid) for _ in range(self.workers)]:
            started.result()
        self._pool = pool

    async def parse(self, body: bytes | bytearray, length_header: str | None) -> InferBody:
        size = header_length(length_header, len(body))
        if size <= INLINE_BYTES:
            return parse_request(body, length_header)
        loop = asyncio.get_running_loop()
        if self._starting is None:  # starting processes blocks for seconds on a loaded machine: not on the loop
            self._starting = loop.run_in_executor(self.threads, self._start)
        await self._starting
        path = SCRATCH / f"convnet-body-{os.getpid()}-{uuid.uuid4().hex}"
        try:
            await loop.run_in_executor(self.threads, _write, path, memoryview(body)[:size])
            header = await loop.run_in_executor(self._pool, parse_file, str(path))
            await loop.run_in_executor(self.threads, _load_arrays, header)
        finally:
            for leftover in SCRATCH.glob(path.name + "*"):
                leftover.unlink(missing_ok=True)
        return parse_request(body, length_header, header)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
