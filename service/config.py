"""The server's one typed configuration, merged from a file, the environment and the command line.

Precedence, per field (later wins): built-in default < config file (TOML or JSON) < environment
variable ``CONVNET_<FIELD>`` < command-line flag. Batching of a model starts from its config.json
``batching`` block, then the global batching fields here, then the file's ``[model.<name>]`` table
(the most specific setting). docs/SERVICE.md lists every field.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .settings import LOG_LEVELS, OPTIMIZATION_LEVELS, PROVIDERS, BatchingFields, BatchSettings, batching_field_error

ENV_PREFIX = "CONVNET_"


MODEL_CONTROL = ("none", "explicit")
CHOICES = {"providers": PROVIDERS, "graph_optimization_level": OPTIMIZATION_LEVELS, "log_level": LOG_LEVELS,
           "model_control": MODEL_CONTROL}
"""The settings that take one of a few names (matched case-insensitively)."""


class ConfigError(ValueError):
    """A configuration value is wrong; the message names its source, the field and the value."""


@dataclass(frozen=True)
class BatchingOverride(BatchingFields):
    """Batching fields that replace the model's config.json values; None keeps the model's own."""

    def __post_init__(self):
        for f in dataclasses.fields(BatchingFields):
            value = getattr(self, f.name)
            if value is not None and (expected := batching_field_error(f.name, value)):
                raise ConfigError(f"{f.name}: expected {expected}, got {value!r}")

    def apply(self, base: BatchSettings) -> BatchSettings:
        changes = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}
        return dataclasses.replace(base, **changes)


@dataclass(frozen=True)
class ServerConfig(BatchingFields):
    """Every server setting with its default; the batching fields (for every model, None = the
    model's config.json value) come from ``BatchingFields``."""

    host: str = "127.0.0.1"
    port: int = 8001
    metrics_port: int = 8002
    http_port: int = 8000
    http_read_timeout_s: float = 30.0
    # Connections on every port (service/connections.py; docs/SERVICE.md "Connections").
    http_header_timeout_s: float = 10.0
    http_keepalive_timeout_s: float = 15.0
    http_max_connections: int = 0
    grpc_max_connections: int = 0
    metrics_max_connections: int = 0
    grpc_handshake_timeout_s: float = 10.0
    grpc_max_connection_idle_s: float = 300.0
    grpc_max_connection_age_s: float = 0.0
    grpc_keepalive_time_s: float = 60.0
    grpc_keepalive_timeout_s: float = 20.0
    grpc_max_concurrent_streams: int = 1024
    # Handler threads of the gRPC server (service/grpc_transport.py): calls running at once, open
    # streams and health watches included; more wait for a thread.
    grpc_threads: int = 1024
    models: Path = Path("models")
    providers: str = "cpu"
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    graph_optimization_level: str = "all"
    max_message_bytes: int = 64 * 1024 * 1024
    reject_non_finite: bool = True
    max_image_pixels: int = 4096 * 4096
    shutdown_grace_s: float = 10.0
    drain_s: float = 2.0
    # Per ClassifyStream: what the server holds for it (waiting, computing, replies not yet sent).
    stream_max_images: int = 256
    stream_max_bytes: int = 16 * 1024 * 1024
    log_level: str = "info"
    max_concurrent_rpcs: int = 0
    reload_interval_s: float = 0.0
    model_control: str = "none"
    # Server processes sharing the ports under one supervising parent (service/workers.py); 1 = no parent.
    workers: int = 1
    # Access: TLS (cert + key; + client CA for mutual TLS) and a bearer token (service/auth.py).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    auth_token: str | None = field(default=None, repr=False)
    auth_token_file: Path | None = None
    # Per-model batching, from the file's [model.<name>] tables only.
    model: Mapping[str, BatchingOverride] = field(default_factory=dict)

    @property
    def grpc_handler_threads(self) -> int:
        """``grpc_threads``, raised with ``max_concurrent_rpcs`` so that a call past the limit of any
        of its three pools still finds a thread to be refused on at once."""
        return max(self.grpc_threads, 3 * self.max_concurrent_rpcs + 8) if self.max_concurrent_rpcs else self.grpc_threads

    def __post_init__(self):
        for name, choices in CHOICES.items():
            _check(getattr(self, name) in choices, name, f"one of {', '.join(choices)}", getattr(self, name))
        for name in ("port", "metrics_port", "http_port"):
            _check(0 <= getattr(self, name) <= 65535, name, "a port in 0..65535 (0 = any free port)", getattr(self, name))
        for name in ("intra_op_threads", "inter_op_threads"):
            _check(getattr(self, name) >= 0, name, "an integer >= 0 (0 = onnxruntime's default)", getattr(self, name))
        _check(self.max_message_bytes >= 1024, "max_message_bytes", "an integer >= 1024", self.max_message_bytes)
        _check(self.max_image_pixels >= 1, "max_image_pixels", "an integer >= 1", self.max_image_pixels)
        for name in ("http_read_timeout_s", "http_header_timeout_s", "http_keepalive_timeout_s",
                     "grpc_handshake_timeout_s", "grpc_max_connection_idle_s", "grpc_keepalive_time_s",
                     "grpc_keepalive_timeout_s"):
            _check(getattr(self, name) > 0, name, "a number > 0", getattr(self, name))
        _check(self.grpc_max_connection_age_s >= 0, "grpc_max_connection_age_s", "a number >= 0 (0 = no limit)",
               self.grpc_max_connection_age_s)
        for name in ("http_max_connections", "grpc_max_connections", "metrics_max_connections"):
            _check(getattr(self, name) >= 0, name, "an integer >= 0 (0 = a share of the open-files limit)",
                   getattr(self, name))
        _check(self.grpc_max_concurrent_streams >= 1, "grpc_max_concurrent_streams", "an integer >= 1",
               self.grpc_max_concurrent_streams)
        _check(self.grpc_threads >= 1, "grpc_threads", "an integer >= 1", self.grpc_threads)
        _check(self.shutdown_grace_s >= 0, "shutdown_grace_s", "a number >= 0", self.shutdown_grace_s)
        _check(self.drain_s >= 0, "drain_s", "a number >= 0 (0 = refuse new requests at once)", self.drain_s)
        _check(self.stream_max_images >= 1, "stream_max_images", "an integer >= 1", self.stream_max_images)
        _check(self.stream_max_bytes >= 1024, "stream_max_bytes", "an integer >= 1024", self.stream_max_bytes)
        _check(self.max_concurrent_rpcs >= 0, "max_concurrent_rpcs", "an integer >= 0 (0 = no limit)",
               self.max_concurrent_rpcs)
        _check(self.reload_interval_s >= 0, "reload_interval_s", "a number >= 0 (0 = only on SIGHUP)",
               self.reload_interval_s)
        _check(self.model_control in MODEL_CONTROL, "model_control", f"one of {', '.join(MODEL_CONTROL)}",
               self.model_control)
        _check(self.workers >= 1, "workers", "an integer >= 1 (1 = one process, no supervisor)", self.workers)
        _check(self.workers == 1 or self.model_control == "none", "model_control",
               "none with workers > 1 (a load or unload call would reach one worker only)", self.model_control)
        _check(bool(self.host), "host", "an address to listen on", self.host)
        self.batching  # checks the global batching fields

    @property
    def batching(self) -> BatchingOverride:
        """The global batching fields as one override."""
        return BatchingOverride(**{f.name: getattr(self, f.name) for f in dataclasses.fields(BatchingFields)})

    def batching_for(self, model_name: str, from_model: BatchSettings) -> BatchSettings:
        """The batching a model runs with: its config.json values, then the global, then its own table."""
        settings = self.batching.apply(from_model)
        if model_name in self.model:
            settings = self.model[model_name].apply(settings)
        return settings


def _check(ok: bool, name: str, expected: str, got: Any) -> None:
    if not ok:
        raise ConfigError(f"{name}: expected {expected}, got {got!r}")


_HINTS = typing.get_type_hints(ServerConfig)
_BATCHING_HINTS = typing.get_type_hints(BatchingOverride)
SCALAR_FIELDS = tuple(f.name for f in dataclasses.fields(ServerConfig) if f.name != "model")


def _coerce(source: str, name: str, value: Any, hint: Any) -> Any:
    """Convert a value from a file, the environment (a string) or a flag to the field's type."""
    args = typing.get_args(hint)
    if type(None) in args:
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
    origin = typing.get_origin(hint)
    try:
        if origin is tuple:
            if isinstance(value, str):
                value = [v for v in value.replace(" ", "").split(",") if v]
            if not isinstance(value, (list, tuple)):
                raise TypeError
            return tuple(_coerce(source, name, v, int) for v in value)
        if hint is bool:
            if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return value.strip().lower() in ("1", "true", "yes", "on")
            if isinstance(value, bool):
                return value
            raise TypeError
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if hint is Path:
            return Path(value)
        if hint is str:
            if not isinstance(value, str):
                raise TypeError
            return value.lower() if name in CHOICES else value
    except (TypeError, ValueError):
        pass
    else:
        raise AssertionError(f"unhandled field type {hint!r}")
    kind = {int: "an integer", float: "a number", bool: "true or false", Path: "a path", str: "a string"}
    expected = "a list of integers" if origin is tuple else kind.get(hint, str(hint))
    raise ConfigError(f"{source}: {name}: expected {expected}, got {value!r}")


def read_file(path: Path) -> dict[str, Any]:
    """The settings of a TOML (.toml) or JSON (.json) file, checked and converted."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it ({exc.strerror})") from None
    try:
        raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path}: expected a table of settings, got {type(raw).__name__}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "model":
            values["model"] = _read_model_tables(path, value)
        elif key in SCALAR_FIELDS:
            values[key] = _coerce(f"config file {path}", key, value, _HINTS[key])
        else:
            raise ConfigError(f"config file {path}: unknown setting {key!r}; expected one of "
                              f"{', '.join(SCALAR_FIELDS)}, model")
    return values


def _read_model_tables(path: Path, tables: Any) -> dict[str, BatchingOverride]:
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise ConfigError(f"config file {path}: model: expected tables [model.<name>], got {tables!r}")
    out = {}
    for name, table in tables.items():
        unknown = sorted(set(table) - set(_BATCHING_HINTS))
        if unknown:
            raise ConfigError(f"config file {path}: model.{name}: unknown setting {unknown[0]!r}; expected one of "
                              f"{', '.join(_BATCHING_HINTS)}")
        out[name] = BatchingOverride(**{k: _coerce(f"config file {path}", f"model.{name}.{k}", v, _BATCHING_HINTS[k])
                                        for k, v in table.items()})
    return out


def read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings given as CONVNET_<FIELD> environment variables."""
    values = {}
    for name in SCALAR_FIELDS:
        key = ENV_PREFIX + name.upper()
        if key in environ and environ[key] != "":
            values[name] = _coerce(f"environment {key}", name, environ[key], _HINTS[name])
    return values


def load_config(file: Path | None = None, flags: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Merge default < file < environment < flags. ``file`` defaults to $CONVNET_CONFIG; flags
    holds only the flags actually given (None values are ignored)."""
    environ = os.environ if environ is None else environ
    if file is None and environ.get(ENV_PREFIX + "CONFIG"):
        file = Path(environ[ENV_PREFIX + "CONFIG"])
    values: dict[str, Any] = read_file(file) if file is not None else {}
    values.update(read_env(environ))
    for name, value in (flags or {}).items():
        if value is not None:
            if name not in SCALAR_FIELDS:
                raise ConfigError(f"flag --{name.replace('_', '-')}: not a configuration field")
            values[name] = _coerce(f"flag --{name.replace('_', '-')}", name, value, _HINTS[name])
    return ServerConfig(**values)
