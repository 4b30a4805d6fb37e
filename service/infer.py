"""The one request path every API takes, free of any transport: resolve, deadline, decode, submit.

An API decodes its wire message into an ``InferRequest``, awaits ``Inference.infer`` and encodes
the ``InferResult``; failures are the exceptions of ``service.errors``, which the API maps to its
own status (``service.servicers.status`` for gRPC). Lookups without inference (model info,
readiness, metadata) go through ``Inference.lookup`` so both version conventions parse alike.
"""
from __future__ import annotations

import asyncio
import re
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import numpy as np

from .batching import ThreadGate
from .errors import InvalidInput
from .metrics import RequestTracker
from .models import ModelRegistry, ServedModel, ServedVersion
from .repository import ModelSpec
from .timing import RequestTiming

Decode = Callable[[ModelSpec, ServedVersion], "np.ndarray | Future[np.ndarray] | Awaitable[np.ndarray]"]
"""decode(spec, version) -> the request's batch (N, C, H, W), checked against the model, or the
future of an executor decoding it (any transport), or a coroutine (the event loop's); called once
the model and version are resolved, since checking needs the spec and max_batch_size."""

KSERVE_VERSION = re.compile(r"[0-9]{1,18}")


def parse_version(version: int | str) -> int:
    """A requested version as a number, 0 = the model's default.

    The own API sends an int (0 = default, field ``version``), KServe a string ("" = default,
    field ``model_version``).
    """
    if isinstance(version, str):
        if version == "":
            return 0
        if not KSERVE_VERSION.fullmatch(version) or int(version) < 1:
            raise InvalidInput(f"model_version: expected '' (the default) or a version number >= 1 (ASCII digits, "
                               f"at most 18), received {version!r}")
        return int(version)
    if version < 0:
        raise InvalidInput(f"version: expected 0 (the default) or a version number >= 1, received {version}")
    return version


def time_left(remaining: float | None, timeout: float | None) -> float | None:
    """Seconds a request may take: the transport's deadline and the request's own timeout, the earlier."""
    if remaining is None:
        return timeout
    return remaining if timeout is None else min(remaining, timeout)


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


@dataclass(slots=True)
class InferRequest:
    """One inference request, whatever API it came by.

    ``timeout`` is the request's own limit in seconds (None: none); ``priority`` is the priority
    level asked for (0 = the model's default; service.priority), ignored by a model without levels.
    """

    model: str
    decode: Decode
    version: int | str = 0
    timeout: float | None = None
    priority: int = 0
    request_id: str = ""


@dataclass(slots=True)
class InferResult:
    """The outputs of ``compute`` for the request's rows, the version that served them, its spec,
    and where the request's time went in the batch queue."""

    outputs: Any
    served: ServedVersion
    spec: ModelSpec
    timing: RequestTiming = field(default_factory=RequestTiming)


class Inference:
    """The request path over one model registry."""

    def __init__(self, registry: ModelRegistry):
        self.registry = registry

    async def infer(self, request: InferRequest, remaining: float | None = None,
                    tracker: RequestTracker | None = None) -> InferResult:
        """Resolve the model and version, decode, wait in the version's batch queue within the deadline.

        ``remaining``: seconds left of the transport's deadline (None: none); ``tracker`` learns
        the model once it is known.
        """
        deadline, model, served, x = self._start(request, remaining, tracker)
        if not isinstance(x, np.ndarray):  # decoding elsewhere: a coroutine, or an executor's future
            x = await (asyncio.wrap_future(x) if isinstance(x, Future) else x)
        timing = RequestTiming()
        outputs = await served.queue.submit(x, _left(deadline), request.priority, timing)
        return InferResult(outputs, served, model.spec, timing)

    def infer_blocking(self, request: InferRequest, remaining: float | None = None,
                       tracker: RequestTracker | None = None, gate: ThreadGate | None = None,
                       on_abandon: Callable[[Callable[[], None]], Any] | None = None) -> InferResult:
        """``infer`` on a handler thread of a synchronous transport, which blocks until the answer
        (``BatchQueue.submit_blocking``: ``gate`` and ``on_abandon`` are passed on)."""
        deadline, model, served, x = self._start(request, remaining, tracker)
        if not isinstance(x, np.ndarray):
            x = x.result()
        timing = RequestTiming()
        outputs = served.queue.submit_blocking(x, _left(deadline), request.priority, timing, gate, on_abandon)
        return InferResult(outputs, served, model.spec, timing)

    def _start(self, request: InferRequest, remaining: float | None, tracker: RequestTracker | None):
        """The request's deadline (monotonic, None: none), model, version and decoded input (or its
        future)."""
        left = time_left(remaining, request.timeout)
        deadline = None if left is None else time.monotonic() + left
        model = self.registry.get(request.model)
        if tracker is not None:
            tracker.known_model(model.name)
        served = self.registry.resolve(model.name, parse_version(request.version))
        return deadline, model, served, request.decode(model.spec, served)

    def lookup(self, model: str, version: int | str = 0) -> tuple[ServedModel, ServedVersion | None]:
        """Model ``model`` and the requested version (the default when 0 or ""; None if none is ready)."""
        return self.registry.lookup(model, parse_version(version))
