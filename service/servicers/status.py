"""Service errors -> gRPC status codes (the project's table, /work/shared/README.md).

A fault inside the server (any other exception) is INTERNAL with an error id that the log
repeats next to the traceback, so a caller's report can be matched to it.
"""
from __future__ import annotations

import logging
import uuid
from typing import NoReturn

import grpc

from ..errors import (Abandoned, BatchFailed, ControlDisabled, DeadlineExceeded, InvalidInput, ModelNotFound, ModelNotReady, QueueFull,
                      ShuttingDown)
from ..metrics import RequestTracker

log = logging.getLogger(__name__)

STATUS = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    ModelNotFound: grpc.StatusCode.NOT_FOUND,
    ModelNotReady: grpc.StatusCode.UNAVAILABLE,
    ShuttingDown: grpc.StatusCode.UNAVAILABLE,
    QueueFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    BatchFailed: grpc.StatusCode.INTERNAL,
    ControlDisabled: grpc.StatusCode.FAILED_PRECONDITION,
    Abandoned: grpc.StatusCode.CANCELLED,
}


MAX_MESSAGE_BYTES = 2000
"""Longest status message sent (UTF-8): messages echo what the caller sent, and a status message
travels as a header that clients refuse beyond 8-16 KiB, hiding the real status."""


def shorten(message: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """``message`` cut to ``limit`` UTF-8 bytes, saying how long it was."""
    data = message.encode()
    if len(data) <= limit:
        return message
    return data[:limit - 60].decode(errors="ignore") + f" ... (message cut: {len(message)} characters in all)"


def status_of(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """The status code and message a caller gets for ``exc``."""
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind], shorten(str(exc))
    error_id = uuid.uuid4().hex[:12]
    log.error("internal error [error id %s]", error_id, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); error id {error_id}"


def failed(exc: Exception, tracker: RequestTracker | None = None) -> tuple[grpc.StatusCode, str]:
    """``status_of(exc)``, recorded as the request's metric code when a tracker is given."""
    code, message = status_of(exc)
    if tracker is not None:
        tracker.code = code.name
    return code, message


async def abort(context, exc: Exception, tracker: RequestTracker | None = None) -> NoReturn:
    """End the call of a coroutine method (its context: grpc.aio's, or service.grpc_transport's
    LoopContext) with the status for ``exc`` (and count it under that code)."""
    await context.abort(*failed(exc, tracker))
