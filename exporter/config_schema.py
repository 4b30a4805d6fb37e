"""config.json's schema, declared once: its fields, defaults and rules, the writer and the checker.

The exporter writes config.json (``model_config``) and the server reads it (``check_config``, then
``batch_settings`` for its ``batching`` block: ``BatchSettings`` and Triton's priority fields,
``PrioritySettings``). Both sides import this module, so it sits at the bottom, in the exporter,
and uses the standard library only (DESIGN.md: the model repository).
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Callable, Mapping


class RepositoryError(ValueError):
    """A bad model name or version, a missing model, or files that do not fit together (a config.json
    that does not fit this schema; exporter.repository raises it for the rest)."""


REJECT, DELAY = "REJECT", "DELAY"
TIMEOUT_ACTIONS = (REJECT, DELAY)
PRIORITY_FIELDS = ("priority_levels", "default_priority_level", "default_queue_policy", "priority_queue_policy")
_POLICY_FIELDS = ("max_queue_size", "default_timeout_microseconds", "default_timeout_us", "allow_timeout_override",
                  "timeout_action")


def _int(value: Any, name: str, low: int, expected: str | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name}: expected {expected or f'an integer >= {low}'}, got {value!r}")
    return value


@dataclass(frozen=True)
class QueuePolicy:
    """One level's policy: Triton's ModelQueuePolicy.

    ``max_queue_size`` counts images, as the model's own ``max_queue_size`` does (0 = no limit of
    the level's own). ``default_timeout_us`` (0 = none) is how long a request may wait before
    ``timeout_action`` applies; ``allow_timeout_override`` lets a request's own timeout replace it.
    """

    max_queue_size: int = 0
    default_timeout_us: int = 0
    allow_timeout_override: bool = False
    timeout_action: str = REJECT

    @classmethod
    def parse(cls, raw: Any, name: str) -> "QueuePolicy":
        """A policy from its JSON object; ``name`` is the field's path for error messages."""
        if not isinstance(raw, dict):
            raise ValueError(f"{name}: expected an object with {', '.join(_POLICY_FIELDS[:1] + _POLICY_FIELDS[2:])}, "
                             f"got {raw!r}")
        unknown = sorted(set(raw) - set(_POLICY_FIELDS))
        if unknown:
            raise ValueError(f"{name}.{unknown[0]}: unknown setting; expected one of "
                             f"max_queue_size, default_timeout_us (or default_timeout_microseconds), "
                             f"allow_timeout_override, timeout_action")
        if "default_timeout_us" in raw and "default_timeout_microseconds" in raw:
            raise ValueError(f"{name}: expected one of default_timeout_us and default_timeout_microseconds "
                             f"(the same setting), got both")
        timeout = raw.get("default_timeout_us", raw.get("default_timeout_microseconds", 0))
        timeout_name = "default_timeout_us" if "default_timeout_us" in raw else "default_timeout_microseconds"
        override = raw.get("allow_timeout_override", False)
        if not isinstance(override, bool):
            raise ValueError(f"{name}.allow_timeout_override: expected true or false, got {override!r}")
        action = raw.get("timeout_action", REJECT)
        if action not in TIMEOUT_ACTIONS:
            raise ValueError(f"{name}.timeout_action: expected one of {', '.join(TIMEOUT_ACTIONS)}, got {action!r}")
        return cls(_int(raw.get("max_queue_size", 0), f"{name}.max_queue_size", 0,
                        "an integer >= 0 (images; 0 = no limit of the level's own)"),
                   _int(timeout, f"{name}.{timeout_name}", 0, "an integer >= 0 (microseconds; 0 = none)"),
                   override, action)

    def timeout(self, requested: float | None) -> float | None:
        """Seconds a request may wait before the timeout action, given its own timeout (seconds).

        With ``allow_timeout_override`` the request's own timeout replaces the policy's; without it
        the earlier of the two applies, so a request cannot wait longer than the policy allows.
        """
        policy = self.default_timeout_us / 1e6 if self.default_timeout_us else None
        if requested is None:
            return policy
        if self.allow_timeout_override or policy is None:
            return requested
        return min(requested, policy)


@dataclass(frozen=True)
class PrioritySettings:
    """The priority fields of a model's ``batching`` block; ``priority_levels`` 0 = one FIFO."""

    priority_levels: int = 0
    default_priority_level: int = 0
    default_queue_policy: QueuePolicy = QueuePolicy()
    priority_queue_policy: Mapping[int, QueuePolicy] = dataclasses.field(default_factory=dict, hash=False)

    def __post_init__(self):
        levels = _int(self.priority_levels, "batching.priority_levels", 0, "an integer >= 0 (0 = off)")
        if levels == 0:
            if self.default_priority_level != 0:
                raise ValueError(f"batching.default_priority_level: expected 0 (or absent) while "
                                 f"priority_levels is 0, got {self.default_priority_level!r}")
        else:
            _int(self.default_priority_level, "batching.default_priority_level", 1,
                 f"an integer in 1..priority_levels ({levels})")
            if self.default_priority_level > levels:
                raise ValueError(f"batching.default_priority_level: expected an integer in 1..priority_levels "
                                 f"({levels}), got {self.default_priority_level}")
        for level in self.priority_queue_policy:
            if not 1 <= level <= levels:
                raise ValueError(f"batching.priority_queue_policy: level {level} does not exist; expected levels "
                                 f"in 1..priority_levels ({levels})")

    @classmethod
    def parse(cls, block: Mapping[str, Any]) -> "PrioritySettings":
        """The priority settings of a ``batching`` block (other keys are ignored here)."""
        policies = block.get("priority_queue_policy", {})
        if not isinstance(policies, dict):
            raise ValueError(f"batching.priority_queue_policy: expected an object {{level: policy}}, got {policies!r}")
        parsed = {}
        for key, raw in policies.items():
            try:
                level = int(key)
            except ValueError:
                raise ValueError(f"batching.priority_queue_policy: expected integer levels as keys, got {key!r}") from None
            parsed[level] = QueuePolicy.parse(raw, f"batching.priority_queue_policy.{key}")
        default = block.get("default_queue_policy")
        return cls(block.get("priority_levels", 0), block.get("default_priority_level", 0),
                   QueuePolicy() if default is None else QueuePolicy.parse(default, "batching.default_queue_policy"),
                   parsed)

    @property
    def enabled(self) -> bool:
        return self.priority_levels > 0

    @property
    def levels(self) -> tuple[int, ...]:
        """The level numbers, highest first: (1, .., N), or (0,) for the single FIFO when off."""
        return tuple(range(1, self.priority_levels + 1)) if self.enabled else (0,)

    def level_of(self, requested: int) -> int:
        """The level of a request asking for ``requested`` (0 = the default). As Triton does, a
        value above ``priority_levels`` gets the default level; with levels off every request is 0."""
        if not self.enabled:
            return 0
        if requested <= 0 or requested > self.priority_levels:
            return self.default_priority_level
        return requested

    def policy(self, level: int) -> QueuePolicy:
        return self.priority_queue_policy.get(level, self.default_queue_policy)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


BATCHING_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "max_batch_size": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "max_queue_delay_ms": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0, "a number >= 0"),
    "preferred_batch_sizes": (lambda v: all(_integer(s) and s >= 1 for s in v), "integers >= 1"),
    "max_queue_size": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "instances": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
}
"""Each batching field's check on its own and what it expects, for the settings and the overrides."""


def batching_field_error(name: str, value: Any) -> str | None:
    """What ``value`` of batching field ``name`` should have been, or None when it is fine."""
    ok, expected = BATCHING_RULES[name]
    return None if ok(value) else expected


@dataclass(frozen=True)
class BatchSettings:
    """How one model batches: the fields of config.json's ``batching`` block (DESIGN.md)."""

    max_batch_size: int = 64
    max_queue_delay_ms: float = 0.0
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int = 1024
    instances: int = 1
    priority: PrioritySettings = PrioritySettings()
    """Triton's priority fields of the block (``PrioritySettings.parse``); not a server flag."""

    def __post_init__(self):
        for name in ("max_batch_size", "max_queue_size", "instances", "max_queue_delay_ms"):
            expected = batching_field_error(name, getattr(self, name))
            if expected:
                raise ValueError(f"batching.{name}: expected {expected}, got {getattr(self, name)!r}")
        sizes = tuple(self.preferred_batch_sizes)
        if batching_field_error("preferred_batch_sizes", sizes) or any(s > self.max_batch_size for s in sizes):
            raise ValueError(f"batching.preferred_batch_sizes: expected integers in 1..max_batch_size "
                             f"({self.max_batch_size}), got {list(sizes)!r}")
        object.__setattr__(self, "preferred_batch_sizes", tuple(sorted(set(sizes))))
        if self.max_queue_size < self.max_batch_size:
            raise ValueError(f"batching.max_queue_size: expected >= max_batch_size ({self.max_batch_size}), "
                             f"got {self.max_queue_size}")

    def cap(self, queued_images: int) -> int:
        """The most images the next batch may hold when ``queued_images`` are waiting."""
        fitting = [s for s in self.preferred_batch_sizes if s <= queued_images]
        return fitting[-1] if fitting else self.max_batch_size

    @property
    def target(self) -> int:
        """The batch size a delayed instance waits for: the largest preferred size, else the maximum."""
        return self.preferred_batch_sizes[-1] if self.preferred_batch_sizes else self.max_batch_size


PLAIN_BATCHING = tuple((f, hint) for f, hint in zip(dataclasses.fields(BatchSettings),
                                                    typing.get_type_hints(BatchSettings).values())
                       if f.name != "priority")
"""The batching fields every model has and the server may override (the priority settings are
config.json's only, written by the operator when wanted)."""


def batching_defaults() -> dict[str, Any]:
    """The default ``batching`` block of a config.json (JSON types: a list for the sizes)."""
    defaults = BatchSettings()
    return {f.name: list(value) if isinstance(value := getattr(defaults, f.name), tuple) else value
            for f, _ in PLAIN_BATCHING}


BatchingFields = dataclasses.make_dataclass(
    "BatchingFields",
    [(f.name, hint | None, dataclasses.field(default=None)) for f, hint in PLAIN_BATCHING],
    frozen=True, namespace={"__module__": __name__, "__doc__": "The batching fields, each optional (None: not set)."})
"""Base of the server's batching flags and of the per-model overrides."""


DEFAULT_BATCHING = batching_defaults()
"""config.json's batching block as written: the BatchSettings defaults."""


@dataclass(frozen=True)
class ConfigField:
    """One field of config.json: its dotted path, and ``check(value, config)`` -> what was expected
    (None when the value is fine). A field with a ``default`` may be left out."""

    path: str
    check: Callable[[Any, dict], str | None]
    default: Any = ...


def _is(*allowed: Any) -> Callable[[Any, dict], str | None]:
    return lambda v, c: None if v in allowed else " or ".join(map(repr, allowed))


def _text(v: Any, c: dict) -> str | None:
    return None if isinstance(v, str) and v else "a non-empty string"


def _ints(length: int | None = None, variable: bool = False) -> Callable[[Any, dict], str | None]:
    def check(v: Any, c: dict) -> str | None:
        ok = isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
        ok = ok and all(x >= 1 or (variable and x == -1) for x in v) and (length is None or len(v) == length)
        return None if ok else (f"a list of {f'{length} ' if length else ''}positive integers"
                                f"{' (-1 = variable)' if variable else ''}")
    return check


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _channels(c: dict) -> int:
    return 3 if c["preprocessing"]["color"] == "rgb" else 1


def _per_channel(positive: bool) -> Callable[[Any, dict], str | None]:
    def check(v: Any, c: dict) -> str | None:
        n = _channels(c)
        if not isinstance(v, list) or len(v) != n or not all(_number(x) for x in v):
            return f"a list of {n} numbers"
        return "positive numbers" if positive and any(x <= 0 for x in v) else None
    return check


def _labels(v: Any, c: dict) -> str | None:
    n = c["output"]["shape"][0]
    ok = isinstance(v, list) and all(isinstance(x, str) for x in v) and len(v) == n
    return None if ok else f"{n} strings (output.shape[0])"


CONFIG_FIELDS: tuple[ConfigField, ...] = (
    ConfigField("name", _text, None),
    ConfigField("architecture", lambda v, c: None if v is None or isinstance(v, str) else "a string", ""),
    ConfigField("spec", lambda v, c: None if v is None or isinstance(v, str) else "a string or null", None),
    ConfigField("input.name", _text),
    ConfigField("input.datatype", _is("FP32")),
    ConfigField("input.layout", _is("NCHW"), "NCHW"),
    ConfigField("input.shape", _ints(3, variable=True)),
    ConfigField("output.name", _text),
    ConfigField("output.datatype", _is("FP32")),
    ConfigField("output.shape", _ints(variable=True)),
    ConfigField("labels", _labels),
    ConfigField("preprocessing.color", _is("rgb", "gray")),
    ConfigField("input.shape[0]", lambda v, c: None if v == _channels(c) else
                f"{_channels(c)} channels for color {c['preprocessing']['color']!r}"),
    ConfigField("preprocessing.resize", _ints(2)),
    ConfigField("preprocessing.scale", lambda v, c: None if _number(v) and v > 0 else "a positive number"),
    ConfigField("preprocessing.mean", _per_channel(positive=False)),
    ConfigField("preprocessing.std", _per_channel(positive=True)),
    ConfigField("preprocessing.invert", _is("never", "always", "auto"), "never"),
    ConfigField("batching", lambda v, c: None if isinstance(v, dict) else "a table of batching settings", {}),
    ConfigField("fully_convolutional", lambda v, c: None if isinstance(v, bool) else "true or false", False),
    ConfigField("trained", lambda v, c: None if v is None or isinstance(v, bool) else "true, false or null", None),
)
"""config.json, declared once: ``model_config`` writes these fields and ``check_config`` checks them
(the server then types them, service.repository, with ``batch_settings`` for the batching block), in this order, so a field's check may rely on
the fields before it. The batching block's own fields are BatchSettings'."""


def config_value(config: dict, path: str) -> Any:
    """The value at a dotted ``path`` (``a.b[0]`` indexes a list); KeyError when it is missing."""
    value: Any = config
    for key in path.split("."):
        key, _, index = key.partition("[")
        if not isinstance(value, dict) or key not in value:
            raise KeyError(path)
        value = value[key]
        if index:
            value = value[int(index.rstrip("]"))]
    return value


def config_get(config: dict, path: str) -> Any:
    """The value at ``path``, or the field's default when a checked config leaves it out."""
    try:
        return config_value(config, path)
    except KeyError:
        return next(f.default for f in CONFIG_FIELDS if f.path == path)


def check_config(config: Any) -> dict:
    """``config`` (a parsed config.json) when every field is present (or has a default) and as
    expected; else a RepositoryError naming the field, the expected and the received value."""
    if not isinstance(config, dict):
        raise RepositoryError(f"config.json: expected a JSON object, got {type(config).__name__}")
    for field in CONFIG_FIELDS:
        try:
            value = config_value(config, field.path)
        except KeyError:
            if field.default is ...:
                raise RepositoryError(f"config.json: missing field {field.path!r}") from None
            continue
        expected = field.check(value, config)
        if expected is not None:
            raise RepositoryError(f"config.json: {field.path}: expected {expected}, got {value!r}")
    return config


def batch_settings(batching: Mapping[str, Any]) -> BatchSettings:
    """A checked config.json's ``batching`` block, typed (the plain fields and the priority fields);
    a RepositoryError naming the field, the expected and the received value."""
    if "priority" in batching:
        raise RepositoryError(f"config.json: batching.priority: unknown setting; expected Triton's "
                              f"{', '.join(PRIORITY_FIELDS)}")
    try:
        plain = {k: v for k, v in batching.items() if k not in PRIORITY_FIELDS}
        return BatchSettings(**{**plain, "preferred_batch_sizes": tuple(batching.get("preferred_batch_sizes", ())),
                                "priority": PrioritySettings.parse(batching)})
    except TypeError as exc:
        raise RepositoryError(f"config.json: batching: {exc}") from None
    except ValueError as exc:
        raise RepositoryError(f"config.json: {exc}") from None


def model_config(network: Any, *, architecture: str, spec: str | None, labels: list[str], preprocessing: dict,
                 fully_convolutional: bool = False, batching: dict | None = None, trained: bool | None = None,
                 input_name: str = "input", output_name: str = "scores") -> dict:
    """config.json for a model (DESIGN.md), checked against CONFIG_FIELDS; a fully convolutional
    one has dynamic H and W (-1). ``trained`` False marks random (untrained) weights. ``network`` is
    an ``exporter.graph.Network`` (its ``name``, ``input_shape`` and ``num_classes`` are read). An
    imported model keeps its own ONNX input and output names, which the server then serves."""
    c, h, w = network.input_shape
    classes = network.num_classes
    if len(labels) != classes:
        raise RepositoryError(f"model {network.name!r}: {len(labels)} labels for {classes} class scores")
    return check_config({
        "name": network.name,
        "architecture": architecture,
        "spec": spec,
        "input": {"name": input_name, "datatype": "FP32", "shape": [c, -1, -1] if fully_convolutional else [c, h, w], "layout": "NCHW"},
        "output": {"name": output_name, "datatype": "FP32", "shape": [classes, -1, -1] if fully_convolutional else [classes]},
        "labels": list(labels),
        "preprocessing": {**preprocessing, "invert": preprocessing.get("invert", "never")},
        "batching": {**DEFAULT_BATCHING, **(batching or {})},
        "fully_convolutional": bool(fully_convolutional),
        "trained": trained,
    })
