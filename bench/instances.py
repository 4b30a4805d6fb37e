"""A worker thread handed work from the event loop that posts the outcome back: the loop -> thread ->
loop hand-off that bench/echo.py (``--busy-ms``) and bench/overheads.py measure. Bench tooling, not the
server: the batch queue's instances pull batches from service.scheduler themselves."""
from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Callable


class InstanceThread:
    """The thread of one instance: runs what it is handed, then calls back on the event loop.

    A C SimpleQueue in and one call_soon_threadsafe out: lighter than an executor future per
    batch, which matters when a batch computes in tens of microseconds.
    """

    def __init__(self, name: str):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def run(self, fn: Callable[[], Any], done: Callable[[Any, bool], None] | None = None) -> None:
        """Run ``fn()`` in the thread, then ``done(outcome, failed)`` on the caller's event loop
        (without ``done``, ``fn`` posts what it has to say itself)."""
        self._jobs.put((asyncio.get_running_loop(), fn, done))

    def stop(self) -> None:
        self._jobs.put(None)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, fn, done = job
            try:
                outcome, failed = fn(), False
            except Exception as exc:
                outcome, failed = exc, True
            if done is None:
                continue
            try:
                loop.call_soon_threadsafe(done, outcome, failed)
            except RuntimeError:  # the event loop is closed: nobody waits for this any more
                return
