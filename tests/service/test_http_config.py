"""The HTTP settings of the configuration: ``http_port`` and ``http_read_timeout_s`` from the
default, a file, the environment and a flag, as the other ports."""
from __future__ import annotations

import pytest

from service.cli import _serve_args
from service.config import ConfigError, load_config


def test_http_port_defaults_to_8000_and_follows_file_env_flag(tmp_path):
    assert load_config(environ={}).http_port == 8000
    path = tmp_path / "server.toml"
    path.write_text("http_port = 9000\nhttp_read_timeout_s = 5\n")
    from_file = load_config(path, environ={})
    assert (from_file.http_port, from_file.http_read_timeout_s) == (9000, 5.0)
    assert load_config(path, environ={"CONVNET_HTTP_PORT": "9100"}).http_port == 9100
    assert load_config(path, flags={"http_port": 0}, environ={"CONVNET_HTTP_PORT": "9100"}).http_port == 0


@pytest.mark.parametrize("source, message", [
    ({"CONVNET_HTTP_PORT": "x"}, "environment CONVNET_HTTP_PORT: http_port: expected an integer, got 'x'"),
    ({"CONVNET_HTTP_PORT": "70000"}, "http_port: expected a port in 0..65535 (0 = any free port), got 70000"),
    ({"CONVNET_HTTP_READ_TIMEOUT_S": "0"}, "http_read_timeout_s: expected a number > 0, got 0.0"),
])
def test_bad_http_settings_name_the_field(source, message):
    with pytest.raises(ConfigError) as caught:
        load_config(environ=source)
    assert message in str(caught.value)


def test_serve_has_the_http_flags():
    import argparse

    parser = argparse.ArgumentParser()
    _serve_args(parser)
    args = parser.parse_args(["--http-port", "0", "--http-read-timeout-s", "2.5"])
    assert (args.http_port, args.http_read_timeout_s) == (0, 2.5)
