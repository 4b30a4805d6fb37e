"""Back-pressure of one request stream: what the server holds for it, in images and in bytes.

A stream holds a request from the moment it is read until its reply has been handed to gRPC (the
``yield`` returned, so the transport took it under its flow control): waiting in the batch queue,
computing, and its reply waiting to be sent all count. Before reading on, the stream waits until
the next request fits both bounds, so a client that never reads its replies stops being read
(and its writes block once the HTTP/2 windows fill) instead of growing the server's memory. A
request larger than a bound on its own is still taken when the stream holds nothing.
"""
from __future__ import annotations

import asyncio
import math


class StreamBudget:
    """At most ``max_images`` images and ``max_bytes`` request + reply bytes held at once."""

    def __init__(self, max_images: int, max_bytes: int):
        self.max_images = max_images
        self.max_bytes = max_bytes
        self.images = 0
        self.bytes = 0
        self._released = asyncio.Event()

    def fits(self, images: int, nbytes: int, max_images: float = math.inf) -> bool:
        if self.images == 0 and self.bytes == 0:
            return True
        return (self.images + images <= min(self.max_images, max_images)
                and self.bytes + nbytes <= self.max_bytes)

    async def acquire(self, images: int, nbytes: int, max_images: float = math.inf) -> None:
        """Wait until ``images`` and ``nbytes`` more fit (``max_images``: a lower bound of the
        request's model, its queue size), then hold them."""
        while not self.fits(images, nbytes, max_images):
            self._released.clear()
            await self._released.wait()
        self.images += images
        self.bytes += nbytes

    def grow(self, nbytes: int) -> None:
        """A held request's reply adds ``nbytes`` (known only once it is encoded)."""
        self.bytes += nbytes

    def release(self, images: int, nbytes: int) -> None:
        self.images -= images
        self.bytes -= nbytes
        self._released.set()


def request_images(request) -> int:
    """The images a ClassifyRequest carries, read from the message without decoding it (at least 1)."""
    which = request.WhichOneof("input")
    if which == "images":
        return max(1, len(request.images.images))
    if which == "tensor" and len(request.tensor.shape):
        return max(1, min(request.tensor.shape[0], 2**31))
    return 1
