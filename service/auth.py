"""Optional bearer-token authentication, for every call but health on every transport (service.admission).

A call must carry the metadata (or HTTP header) ``authorization: Bearer <token>`` (the scheme in any case, as
RFC 7235 says; one or more spaces before the token); otherwise it is answered UNAUTHENTICATED,
with a message saying what was wrong, before any servicer code runs. Health checks stay open so that load balancers
and orchestrators can probe without the secret. Tokens are compared in constant time.
The token comes from the configuration (``auth_token``, best set as $CONVNET_AUTH_TOKEN) or from
a file (``auth_token_file``); the server never logs it.
"""
from __future__ import annotations

import hmac
from pathlib import Path

HEADER = "authorization"
SCHEME = "bearer"
EXEMPT_PREFIXES = ("/grpc.health.v1.Health/",)


class TokenError(ValueError):
    """The configured token cannot be used; the message says why (never what the token is)."""


def check_token(token: str, source: str) -> str:
    token = token.strip()
    if not token:
        raise TokenError(f"{source}: expected a bearer token, got an empty one")
    if not all(33 <= ord(c) <= 126 for c in token):
        raise TokenError(f"{source}: expected a token of visible ASCII characters (no spaces), got one that is not")
    return token


def load_token(token: str | None, token_file: Path | None) -> str | None:
    """The token the server requires, or None (no authentication)."""
    if token and token_file:
        raise TokenError("auth_token and auth_token_file: expected at most one of them, got both")
    if token_file is not None:
        try:
            text = Path(token_file).read_text()
        except OSError as exc:
            raise TokenError(f"auth_token_file {token_file}: cannot read it ({exc.strerror})") from None
        return check_token(text, f"auth_token_file {token_file}")
    if token:
        return check_token(token, "auth_token")
    return None


class BearerToken:
    """Checks a call's ``authorization`` values against the configured token."""

    def __init__(self, token: str):
        self._expected = token.encode()

    def refusal(self, values) -> str | None:
        """None when ``values`` (the call's ``authorization`` entries) hold the token, else why not;
        the message never repeats what the caller sent, which may be a secret."""
        values = list(values)
        if not values:
            return f"{HEADER}: expected '{HEADER}: Bearer <token>' (gRPC metadata or HTTP header), received none"
        if len(values) > 1:
            return f"{HEADER}: expected one '{HEADER}' entry, received {len(values)}"
        value = values[0] if isinstance(values[0], str) else bytes(values[0]).decode("latin-1")
        scheme, _, credentials = value.strip(" ").partition(" ")
        if scheme.lower() != SCHEME:
            return (f"{HEADER}: expected the scheme 'Bearer <token>' (any case), received "
                    + ("an empty value" if not scheme else "another scheme"))
        token = credentials.lstrip(" ")
        if not token:
            return f"{HEADER}: expected 'Bearer <token>', received the scheme without a token"
        if not all(33 <= ord(c) <= 126 for c in token):
            return (f"{HEADER}: expected a token of visible ASCII characters after the scheme, received "
                    f"one with spaces or other characters")
        if hmac.compare_digest(token.encode(), self._expected):
            return None
        return f"{HEADER}: expected a valid bearer token, received one that is not"
