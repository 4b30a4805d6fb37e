"""The gRPC port's access rules on the HTTP port: the same TLS files, and the paths that need no
token (the admission, service.admission, checks it for every other path).

A request must carry ``Authorization: Bearer <token>`` (the scheme in any case, RFC 7235), else
401 with ``WWW-Authenticate: Bearer``; the health endpoints and the page itself (static, no data)
stay open, as gRPC health does, so that probes and a browser need no secret.
"""
from __future__ import annotations

import ssl
from pathlib import Path

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
