"""The configuration: default < file < environment < flags, typed, with errors naming the source."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.settings import BatchSettings
from service.config import BatchingOverride, ConfigError, ServerConfig, load_config


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_follow_the_project_conventions():
    config = load_config(environ={})
    assert (config.host, config.port, config.metrics_port) == ("127.0.0.1", 8001, 8002)
    assert config.models == Path("models") and config.providers == "cpu"
    assert config.reject_non_finite is True
    assert config.batching == BatchingOverride()


def test_file_then_environment_then_flags(tmp_path):
    path = write(tmp_path, "server.toml", """
port = 9001
metrics_port = 9002
providers = "CUDA"
intra_op_threads = 3
reject_non_finite = false
preferred_batch_sizes = [8, 4]
""")
    from_file = load_config(path, environ={})
    assert (from_file.port, from_file.metrics_port, from_file.providers) == (9001, 9002, "cuda")
    assert from_file.intra_op_threads == 3 and from_file.reject_non_finite is False
    assert from_file.preferred_batch_sizes == (8, 4)

    env = {"CONVNET_PORT": "9100", "CONVNET_REJECT_NON_FINITE": "yes", "CONVNET_PREFERRED_BATCH_SIZES": "2, 16",
           "CONVNET_MODELS": "/srv/models"}
    from_env = load_config(path, environ=env)
    assert from_env.port == 9100 and from_env.metrics_port == 9002
    assert from_env.reject_non_finite is True and from_env.preferred_batch_sizes == (2, 16)
    assert from_env.models == Path("/srv/models")

    from_flags = load_config(path, flags={"port": 9200, "metrics_port": None, "instances": 2}, environ=env)
    assert (from_flags.port, from_flags.metrics_port, from_flags.instances) == (9200, 9002, 2)


def test_config_file_named_by_environment_and_json_files(tmp_path):
    path = write(tmp_path, "server.json", json.dumps({"host": "0.0.0.0", "shutdown_grace_s": 2.5}))
    config = load_config(environ={"CONVNET_CONFIG": str(path)})
    assert config.host == "0.0.0.0" and config.shutdown_grace_s == 2.5


def test_batching_model_then_global_then_per_model_table(tmp_path):
    path = write(tmp_path, "server.toml", """
max_queue_delay_ms = 2.0
instances = 2
[model.cifar-vgg]
max_batch_size = 128
max_queue_size = 4096
""")
    config = load_config(path, environ={})
    from_model = BatchSettings(max_batch_size=64, max_queue_size=1024, instances=1)
    assert config.batching_for("cifar-tiny", from_model) == BatchSettings(
        max_batch_size=64, max_queue_delay_ms=2.0, max_queue_size=1024, instances=2)
    assert config.batching_for("cifar-vgg", from_model) == BatchSettings(
        max_batch_size=128, max_queue_delay_ms=2.0, max_queue_size=4096, instances=2)


@pytest.mark.parametrize("text, message", [
    ("port = 'abc'", r"server.toml: port: expected an integer, got 'abc'"),
    ("portt = 1", r"unknown setting 'portt'"),
    ("providers = 'tpu'", r"providers: expected one of cpu, cuda, got 'tpu'"),
    ("reject_non_finite = 3", r"reject_non_finite: expected true or false, got 3"),
    ("max_batch_size = 0", r"max_batch_size: expected an integer >= 1, got 0"),
    ("[model.m]\nmax_batch = 3", r"model.m: unknown setting 'max_batch'"),
    ("port = ", r"not valid TOML"),
])
def test_bad_file_values_name_the_source_field_and_value(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, "server.toml", text), environ={})


def test_bad_environment_and_flag_values_name_their_source(tmp_path):
    with pytest.raises(ConfigError, match=r"environment CONVNET_METRICS_PORT: metrics_port: expected an integer, got 'x'"):
        load_config(environ={"CONVNET_METRICS_PORT": "x"})
    with pytest.raises(ConfigError, match=r"port: expected a port in 0..65535.*70000"):
        load_config(flags={"port": 70000}, environ={})
    with pytest.raises(ConfigError, match=r"config file .*missing.toml: cannot read it"):
        load_config(tmp_path / "missing.toml", environ={})


def test_server_config_is_typed_and_frozen():
    config = ServerConfig()
    with pytest.raises(Exception):
        config.port = 1  # type: ignore[misc]


def test_serve_help_shows_the_real_defaults_and_choices(capsys):
    from service import cli

    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    config, batching = ServerConfig(), BatchSettings()
    for text in [f"gRPC port (default {config.port}; 0 = any free port)", f"(default {config.shutdown_grace_s})",
                 f"(default {config.max_message_bytes})", "--graph-optimization-level {disable,basic,extended,all}",
                 "--providers {cpu,cuda}", f"the exporter writes {batching.max_batch_size})",
                 f"the exporter writes {batching.max_queue_size})"]:
        assert text in shown, text


def test_the_exporters_batching_block_is_the_settings_defaults():
    from exporter.config_schema import DEFAULT_BATCHING

    assert BatchSettings(**{**DEFAULT_BATCHING, "preferred_batch_sizes": tuple(DEFAULT_BATCHING["preferred_batch_sizes"])}) \
        == BatchSettings()
    assert DEFAULT_BATCHING == {"max_batch_size": 64, "max_queue_delay_ms": 0.0, "preferred_batch_sizes": [],
                                "max_queue_size": 1024, "instances": 1}
