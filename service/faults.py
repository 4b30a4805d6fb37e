"""A TEST HOOK: make a batch's compute fail or stall on demand, to prove faults stay in their batch.

Off unless one of these environment variables is set (the server logs a warning at start when one is):

- ``CONVNET_INJECT_FAULT=V``: a batch holding an image whose first value is exactly ``V`` (as
  float32) raises ``InjectedFault`` inside the compute thread, as a failing session run would.
- ``CONVNET_INJECT_SLOW=V:SECONDS``: a batch holding such an image sleeps ``SECONDS`` before it
  computes, so a test can act while a batch is known to be computing.
- ``CONVNET_INJECT_SLOW_LOAD=SECONDS``: loading the repository at start-up takes ``SECONDS`` more,
  so a test can signal the process while it is known to be starting.

A caller chooses which batch fails by putting ``V`` in one of its images; no other image triggers
anything. Never set these in production.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Mapping

import numpy as np

log = logging.getLogger(__name__)

FAULT_ENV = "CONVNET_INJECT_FAULT"
SLOW_ENV = "CONVNET_INJECT_SLOW"
SLOW_LOAD_ENV = "CONVNET_INJECT_SLOW_LOAD"


class InjectedFault(RuntimeError):
    """Raised by a compute when the fault-injection test hook fires."""


def _marked(batch: np.ndarray, value: np.float32) -> bool:
    return bool((batch.reshape(len(batch), -1)[:, 0] == value).any())


def inject(compute: Callable[[int, np.ndarray], Any], model: str,
           environ: Mapping[str, str] | None = None) -> Callable[[int, np.ndarray], Any]:
    """``compute`` itself when the hook is off (the default), else a wrapper that fails or stalls
    the batches marked as the environment says."""
    environ = os.environ if environ is None else environ
    fault, slow = environ.get(FAULT_ENV, ""), environ.get(SLOW_ENV, "")
    if not fault and not slow:
        return compute
    try:
        fault_value = np.float32(fault) if fault else None
        slow_value, slow_seconds = (np.float32(slow.split(":")[0]), float(slow.split(":")[1])) if slow else (None, 0.0)
    except (ValueError, IndexError):
        raise ValueError(f"{FAULT_ENV}={fault!r} / {SLOW_ENV}={slow!r}: expected a number / NUMBER:SECONDS") from None
    log.warning("model %s: TEST HOOK fault injection is on (%s=%r, %s=%r): never use this in production",
                model, FAULT_ENV, fault, SLOW_ENV, slow)

    def faulty(instance: int, batch: np.ndarray) -> Any:
        if slow_value is not None and _marked(batch, slow_value):
            time.sleep(slow_seconds)
        if fault_value is not None and _marked(batch, fault_value):
            raise InjectedFault(f"injected fault ({FAULT_ENV}={fault}) in a batch of {len(batch)} images")
        return compute(instance, batch)

    return faulty


def slow_load(environ: Mapping[str, str] | None = None) -> None:
    """Sleep ``CONVNET_INJECT_SLOW_LOAD`` seconds (blocking; at start-up, before the models load)."""
    environ = os.environ if environ is None else environ
    seconds = environ.get(SLOW_LOAD_ENV, "")
    if seconds:
        log.warning("TEST HOOK %s=%s: start-up delayed; never use this in production", SLOW_LOAD_ENV, seconds)
        time.sleep(float(seconds))
