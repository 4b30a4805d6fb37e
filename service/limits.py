"""Concurrent-call limits per class of call, so that one class cannot lock another out.

gRPC's own ``maximum_concurrent_rpcs`` counts every call together: callers without the token could
hold every slot with health Watch streams (exempt from the token, and open for as long as they
like) and lock authenticated inference out. Here each class has its own bound of
``max_concurrent_rpcs`` calls: the calls the token guards (both inference APIs, reflection), health
checks, and health watches. A call beyond its class's bound is answered RESOURCE_EXHAUSTED at once,
before any servicer code runs, with a message naming the limit. The interceptor sits after the
token check, so a call refused UNAUTHENTICATED never takes a slot. The pools are taken by
service.admission, for every transport alike.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

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
