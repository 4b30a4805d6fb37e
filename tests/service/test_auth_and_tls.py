"""The access settings on their own: bearer-token loading and checking (service/auth.py) and the
TLS credentials' errors (service/tls.py). Live servers: tests/integration/test_access.py."""
from __future__ import annotations

import pytest

from service.auth import BearerToken, TokenError, load_token
from service.config import ServerConfig, load_config
from service.tls import TLSError, server_credentials


def test_token_from_the_environment_or_a_file_never_both(tmp_path):
    assert load_config(None, {}, {"CONVNET_AUTH_TOKEN": "s3cret"}).auth_token == "s3cret"
    assert "s3cret" not in repr(load_config(None, {}, {"CONVNET_AUTH_TOKEN": "s3cret"}))
    assert load_token("s3cret", None) == "s3cret"
    (tmp_path / "token").write_text("from-a-file\n")
    assert load_token(None, tmp_path / "token") == "from-a-file"
    assert load_token(None, None) is None
    with pytest.raises(TokenError, match="at most one of them, got both"):
        load_token("a", tmp_path / "token")
    (tmp_path / "empty").write_text("  \n")
    with pytest.raises(TokenError, match="empty"):
        load_token(None, tmp_path / "empty")
    with pytest.raises(TokenError, match="cannot read it"):
        load_token(None, tmp_path / "absent")
    with pytest.raises(TokenError, match="visible ASCII"):
        load_token("two words", None)


@pytest.mark.parametrize("metadata, ok, words", [
    ((("authorization", "Bearer s3cret"),), True, ""),
    ((("authorization", "bearer s3cret"),), True, ""),
    ((("authorization", "BEARER s3cret"),), True, ""),
    ((("authorization", "bEaReR s3cret"),), True, ""),
    ((("authorization", "Bearer  s3cret"),), True, ""),
    ((), False, "received none"),
    ((("authorization", "Bearer s3cre"),), False, "not"),
    ((("authorization", "Bearer s3cretX"),), False, "not"),
    ((("authorization", "Bearers3cret"),), False, "another scheme"),
    ((("authorization", "Basic czNjcmV0"),), False, "another scheme"),
    ((("authorization", "s3cret"),), False, "another scheme"),
    ((("authorization", "Bearer"),), False, "without a token"),
    ((("authorization", "bearer   "),), False, "without a token"),
    ((("authorization", ""),), False, "an empty value"),
    ((("authorization", "Bearer s3cret extra"),), False, "with spaces"),
    ((("authorization", "Bearer s3cr\u00e9t"),), False, "visible ASCII"),
    ((("x-other", "Bearer s3cret"),), False, "received none"),
    ((("authorization", "Bearer s3cret"), ("authorization", "Bearer other")), False, "received 2"),
])
def test_only_the_exact_bearer_token_is_accepted_the_scheme_in_any_case(metadata, ok, words):
    message = BearerToken("s3cret").refusal(v for k, v in metadata if k == "authorization")
    accepted, message = message is None, message or ""
    assert accepted is ok and words in message and "s3cret" not in message
    assert ok or message.startswith("authorization: expected ")


def test_tls_settings_must_come_in_pairs_and_be_pem(tmp_path):
    assert server_credentials(None, None) is None
    pem = tmp_path / "x.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(TLSError, match="tls_key: expected both tls_cert and tls_key for TLS, got only tls_cert"):
        server_credentials(pem, None)
    with pytest.raises(TLSError, match="tls_cert: expected both .* got only tls_key"):
        server_credentials(None, pem)
    with pytest.raises(TLSError, match="tls_client_ca: expected tls_cert and tls_key as well"):
        server_credentials(None, None, pem)
    (tmp_path / "junk.pem").write_bytes(b"\x00\x01 not pem")
    with pytest.raises(TLSError, match=r"tls_key .*junk.pem: expected a PEM file, got 10 bytes"):
        server_credentials(pem, tmp_path / "junk.pem")
    with pytest.raises(TLSError, match="tls_cert .*absent.pem: cannot read it"):
        server_credentials(tmp_path / "absent.pem", pem)


def test_the_default_address_is_loopback():
    assert ServerConfig().host == "127.0.0.1"
    assert load_config(None, {}, {}).host == "127.0.0.1"
    assert load_config(None, {"host": "0.0.0.0"}, {}).host == "0.0.0.0"  # only when chosen
