"""Errors -> HTTP statuses: the exception -> gRPC code mapping of service/servicers/status.py, then
one table from gRPC codes to HTTP statuses, so both transports answer the same failure alike.

A full queue (RESOURCE_EXHAUSTED) is 429 Too Many Requests with ``Retry-After``, not 503: the
server is up and the model is ready, the caller should slow down; 503 stays for "not ready or
stopping", which load balancers and orchestrators read as "send this replica nothing". The HTTP
layer's own refusals (a body over ``max_message_bytes``: 413) are raised as ``HttpError``.
"""
from __future__ import annotations

import grpc

from ..servicers.status import status_of

HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
RETRY_AFTER_S = 1
"""Seconds a caller refused with 429 or 503 is told to wait (the ``Retry-After`` header)."""


class HttpError(Exception):
    """A refusal of the HTTP layer itself (body size, content type, ...), with its gRPC code for
    the metrics and its HTTP status (which may be finer than the code's, e.g. 413 or 415)."""

    def __init__(self, status: int, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.status = status
        self.code = code


def http_error(exc: Exception) -> tuple[int, grpc.StatusCode, str]:
    """The HTTP status, the gRPC code (the metrics' ``code`` label) and the message for ``exc``."""
    if isinstance(exc, HttpError):
        return exc.status, exc.code, str(exc)
    code, message = status_of(exc)
    return HTTP_STATUS.get(code, 500), code, message
