"""Optional TLS for the gRPC port: a server certificate and key, and for mutual TLS a client CA.

With ``tls_cert`` and ``tls_key`` the port speaks TLS only; adding ``tls_client_ca`` makes it
mutual: a client must present a certificate signed by that CA, or the handshake fails.
"""
from __future__ import annotations

from pathlib import Path

import grpc


class TLSError(ValueError):
    """The TLS settings are incomplete or a file cannot be read; the message names the setting."""


def _read(setting: str, path: Path) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TLSError(f"{setting} {path}: cannot read it ({exc.strerror})") from None
    if b"-----BEGIN" not in data:
        raise TLSError(f"{setting} {path}: expected a PEM file, got {len(data)} bytes without a PEM header")
    return data


def server_credentials(cert: Path | None, key: Path | None,
                       client_ca: Path | None = None) -> grpc.ServerCredentials | None:
    """TLS credentials for the gRPC port, or None for a plaintext port (no certificate given)."""
    if cert is None and key is None:
        if client_ca is not None:
            raise TLSError("tls_client_ca: expected tls_cert and tls_key as well (mutual TLS needs TLS), got neither")
        return None
    if cert is None or key is None:
        missing = "tls_cert" if cert is None else "tls_key"
        raise TLSError(f"{missing}: expected both tls_cert and tls_key for TLS, got only "
                       f"{'tls_key' if cert is None else 'tls_cert'}")
    pair = (_read("tls_key", key), _read("tls_cert", cert))
    ca = _read("tls_client_ca", client_ca) if client_ca is not None else None
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=ca is not None)
