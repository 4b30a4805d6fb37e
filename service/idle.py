"""Run work when the asyncio event loop has nothing else to do: before it would wait for I/O.

The batch queue uses it to start a batch only after the loop has taken in every request that has
already reached the process. At low load the loop is idle right after a request is queued, so the
batch starts at once; under load the loop stays busy taking in requests, and they join the batch.
(On one core an eagerly started compute thread would take the CPU from the loop after every
request, and batches would never grow.)

A loop made by ``new_event_loop()`` (``run()`` uses one) has a selector that, each time the loop is
about to wait (no callbacks ready, no I/O pending), first runs what ``call_when_idle`` registered.
On any other loop ``call_when_idle`` returns False and the caller does the work itself.
"""
from __future__ import annotations

import asyncio
import selectors
import weakref
from typing import Any, Callable, Coroutine, Hashable

_SELECTORS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, IdleSelector]" = weakref.WeakKeyDictionary()


class IdleSelector(selectors.DefaultSelector):
    """The platform's selector, running the registered idle work before a select that would wait."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._work: dict[Hashable, Callable[[], Any]] = {}

    def defer(self, key: Hashable, fn: Callable[[], Any]) -> None:
        self._work[key] = fn

    def select(self, timeout: float | None = None):
        if self._work and (timeout is None or timeout > 0):
            pending = super().select(0)
            if pending:  # more work has arrived: handle it first
                return pending
            work = list(self._work.values())
            self._work.clear()
            for fn in work:
                try:
                    fn()
                except Exception as exc:  # reported like a failing callback; the loop goes on
                    self.loop.call_exception_handler({"message": "exception in idle work", "exception": exc})
            timeout = 0  # the work may have made callbacks ready
        return super().select(timeout)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A selector event loop that supports ``call_when_idle``."""
    selector = IdleSelector()
    loop = asyncio.SelectorEventLoop(selector)
    selector.loop = loop
    _SELECTORS[loop] = selector
    return loop


def run(main: Coroutine) -> Any:
    """``asyncio.run(main)`` on a loop from ``new_event_loop()``."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)


def call_when_idle(fn: Callable[[], Any], key: Hashable | None = None) -> bool:
    """Run ``fn()`` once the running loop is idle; True if it will, False if this loop cannot.

    Registering again under the same ``key`` (default: ``fn`` itself) before the loop is idle
    replaces the earlier registration: it runs once.
    """
    selector = _SELECTORS.get(asyncio.get_running_loop())
    if selector is None:
        return False
    selector.defer(fn if key is None else key, fn)
    return True
