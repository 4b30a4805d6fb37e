"""Signals that arrive before the server's event loop runs, recorded instead of acted on by default.

Kept free of heavy imports, so the handlers go in first thing in ``python -m service serve``.
"""
from __future__ import annotations

import signal


class EarlySignals:
    """Stop and reload signals that arrive before the event loop runs (imports, configuration).

    ``install`` is the first thing ``serve`` does in the process; the server's loop takes over the
    handlers and replays what was recorded (``take``), so no signal meets its default action
    (SIGHUP's terminates the process).
    """

    def __init__(self):
        self.received: list[int] = []

    def install(self) -> None:
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._record)

    def _record(self, signum, frame) -> None:
        self.received.append(signum)

    def take(self) -> list[int]:
        received, self.received = self.received, []
        return received


early_signals = EarlySignals()
