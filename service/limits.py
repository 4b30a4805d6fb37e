"""Concurrent-call limits per class of call, so that one class cannot lock another out.

gRPC's own ``maximum_concurrent_rpcs`` counts every call together: callers without the token could
hold every slot with health Watch streams (exempt from the token, and open for as long as they
like) and lock authenticated inference out. Here each class has its own bound of
``max_concurrent_rpcs`` calls: the calls the token guards (both inference APIs, reflection), health
checks, and health watches. A call beyond its class's bound is answered RESOURCE_EXHAUSTED at once,
before any servicer code runs, with a message naming the limit. The interceptor sits after the
token check, so a call refused UNAUTHENTICATED never takes a slot. Other front ends (an HTTP API)
take their slots from the same ``CallLimits`` with ``enter``/``leave``.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import grpc

from .auth import EXEMPT_PREFIXES
from .guard import guarded

GUARDED, CHECKS, WATCHES = "guarded", "health-checks", "health-watches"
DESCRIPTIONS = {
    GUARDED: "calls that need the token (inference, model metadata, reflection)",
    CHECKS: "health checks (exempt from the token, counted on their own)",
    WATCHES: "health watch streams (exempt from the token, counted on their own)",
}


@dataclass
class Pool:
    """At most ``limit`` calls of one class at once (0 = no limit)."""

    name: str
    limit: int
    active: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def enter(self) -> bool:
        with self._lock:
            if self.limit and self.active >= self.limit:
                return False
            self.active += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.active -= 1

    def refusal(self) -> str:
        return (f"max_concurrent_rpcs: expected at most {self.limit} concurrent {DESCRIPTIONS[self.name]}, "
                f"received one more; retry later")


class CallLimits(grpc.aio.ServerInterceptor):
    """RESOURCE_EXHAUSTED for a call beyond the bound of its class (see the module docstring)."""

    def __init__(self, limit: int, exempt: tuple[str, ...] = EXEMPT_PREFIXES):
        self.pools = {name: Pool(name, limit) for name in DESCRIPTIONS}
        self._exempt = exempt

    def pool_for(self, method: str, streaming: bool) -> Pool:
        """The pool of a call to ``method`` (a response stream from an exempt method is a watch)."""
        if not method.startswith(self._exempt):
            return self.pools[GUARDED]
        return self.pools[WATCHES if streaming else CHECKS]

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        pool = self.pool_for(handler_call_details.method, bool(handler.response_streaming))
        return _counted(handler, pool) if pool.limit else handler


def _counted(handler: grpc.RpcMethodHandler, pool: Pool) -> grpc.RpcMethodHandler:
    """The same handler, holding a slot of ``pool`` while it runs."""
    async def admit(context) -> None:
        if not pool.enter():
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, pool.refusal())

    return guarded(handler, admit, pool.leave)
