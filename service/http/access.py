"""The gRPC port's access rules on the HTTP port: the same TLS files and the same bearer token.

A request must carry ``Authorization: Bearer <token>`` (the scheme in any case, RFC 7235), else
401 with ``WWW-Authenticate: Bearer``; the health endpoints and the page itself (static, no data)
stay open, as gRPC health does, so that probes and a browser need no secret.
"""
from __future__ import annotations

import hmac
import ssl
from pathlib import Path

import grpc

from .status import HttpError

EXEMPT_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/", "/favicon.ico"})


def ssl_context(cert: Path | None, key: Path | None, client_ca: Path | None) -> ssl.SSLContext | None:
    """TLS for the HTTP port from the settings the gRPC port uses (already checked by service.tls)."""
    if cert is None or key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        context.load_verify_locations(cafile=str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class BearerToken:
    """Checks the ``Authorization`` header of a request against the configured token."""

    def __init__(self, token: str):
        self._expected = token.encode()

    def check(self, path: str, authorization: str | None) -> None:
        """Raises a 401 HttpError unless ``path`` is exempt or the header holds the token."""
        if path in EXEMPT_PATHS:
            return
        if authorization is None:
            raise _refusal("expected the header 'Authorization: Bearer <token>', received none")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise _refusal("expected the scheme 'Bearer <token>', received another scheme")
        if not hmac.compare_digest(token.strip().encode(errors="replace"), self._expected):
            raise _refusal("expected a valid bearer token, received one that is not")


def _refusal(message: str) -> HttpError:
    return HttpError(401, grpc.StatusCode.UNAUTHENTICATED, f"Authorization: {message}")
