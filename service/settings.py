"""The settings that more than one module of the server declares or checks, declared once here.

``BatchSettings`` is how one model batches (config.json's ``batching`` block): the server's
batching flags and the per-model overrides (``BatchingFields``, every field optional) and the
exporter's defaults (``batching_defaults``) are derived from its fields, all declared with
config.json's schema in ``exporter.config_schema`` (which the exporter writes with) and named here
for the server. The choices of the provider, optimization-level and log-level settings are listed
here for the configuration, the command line and the sessions alike, with the reply's default top-k.
"""
from __future__ import annotations

from exporter.config_schema import BatchingFields, BatchSettings, batching_defaults, batching_field_error

PROVIDERS = ("cpu", "cuda")
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_MODEL = "fashion"
"""The trained model that ``classify`` and the page use when none is named (exporter.defaults)."""
DEFAULT_TOP_K = 5
"""Labels per image in a Classify reply when the request asks for none (top_k = 0)."""

__all__ = ["PROVIDERS", "OPTIMIZATION_LEVELS", "LOG_LEVELS", "DEFAULT_TOP_K",
           "BatchSettings", "BatchingFields", "batching_defaults", "batching_field_error"]
