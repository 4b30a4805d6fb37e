"""Connections as a bounded resource on every port: the open-files budget and how it is shared,
the gRPC transport's connection options, and accept errors logged at most once an interval.

Every open connection holds a file descriptor. With systemd's default soft limit (1,024), a
flood of idle connections to one port used to take every descriptor, and then no port could
accept anything. At start the soft limit is raised to the hard limit; the descriptors beyond a
reserve for the process itself (model files, pipes, logs, worker processes) are shared out: 40 %
to the HTTP port, 40 % to the gRPC port, 10 % to the metrics port, unless a ``*_max_connections``
setting fixes a port's share. Transport-neutral: the HTTP ports (service.http.connections) and
the gRPC options here read the same budget.
"""
from __future__ import annotations

import logging
import resource
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

FD_RESERVE = 128
"""Descriptors kept for the process itself, never handed to connections."""
SHARES = {"http": 0.4, "grpc": 0.4, "metrics": 0.1}
MIN_CONNECTIONS = 8
ACCEPT_LOG_INTERVAL_S = 10.0
"""An accept error is logged at most once per this many seconds, with the count since the last line."""


def raise_open_files_limit() -> int:
    """Raise the soft open-files limit to the hard one; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-files limit from %d to %d: %s", soft, hard, exc)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


@dataclass(frozen=True)
class ConnectionCaps:
    """Open connections allowed per port."""

    http: int
    grpc: int
    metrics: int

    @classmethod
    def derive(cls, open_files: int, http: int = 0, grpc: int = 0, metrics: int = 0) -> "ConnectionCaps":
        """Each port's cap: its setting, or (0) its share of ``open_files`` less the reserve."""
        budget = max(0, open_files - FD_RESERVE)
        share = {name: max(MIN_CONNECTIONS, int(budget * part)) for name, part in SHARES.items()}
        return cls(http or share["http"], grpc or share["grpc"], metrics or share["metrics"])


def grpc_options(max_message_bytes: int, reuse_port: bool = False) -> list[tuple[str, int]]:
    """The channel options of every server we start: message limits both ways; port sharing only
    for the workers of one pool (service/workers.py), else a port in use is an error."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", int(reuse_port)),
    ]


def grpc_connection_options(config, max_connections: int) -> list[tuple[str, int]]:
    """gRPC core's connection settings (docs/SERVICE.md "Connections"): a cap on open connections,
    a handshake deadline, idle and age limits, keepalive pings and a bound on streams per connection."""
    ms = lambda seconds: int(seconds * 1000)  # noqa: E731
    options = [
        ("grpc.max_allowed_incoming_connections", max_connections),
        ("grpc.server_handshake_timeout_ms", ms(config.grpc_handshake_timeout_s)),
        ("grpc.max_connection_idle_ms", ms(config.grpc_max_connection_idle_s)),
        ("grpc.keepalive_time_ms", ms(config.grpc_keepalive_time_s)),
        ("grpc.keepalive_timeout_ms", ms(config.grpc_keepalive_timeout_s)),
        ("grpc.max_concurrent_streams", config.grpc_max_concurrent_streams),
    ]
    if config.grpc_max_connection_age_s:
        options += [("grpc.max_connection_age_ms", ms(config.grpc_max_connection_age_s)),
                    ("grpc.max_connection_age_grace_ms", ms(config.shutdown_grace_s))]
    return options


class RateLimitedLog:
    """Logs one kind of recurring event at most once per ``interval_s``, with how many happened."""

    def __init__(self, what: str, interval_s: float = ACCEPT_LOG_INTERVAL_S, clock=time.monotonic):
        self.what = what
        self.interval_s = interval_s
        self.clock = clock
        self.count = 0
        self.total = 0
        self._last = float("-inf")
        self._lock = threading.Lock()

    def event(self, detail: str) -> bool:
        """Count one event; True when this one was logged."""
        with self._lock:
            self.count += 1
            self.total += 1
            now = self.clock()
            if now - self._last < self.interval_s:
                return False
            count, self.count, self._last = self.count, 0, now
        log.warning("%s: %d in the last %g s (latest: %s)", self.what, count, self.interval_s, detail)
        return True


ACCEPT_ERROR = "socket.accept() out of system resource"


def quiet_accept_errors(loop) -> RateLimitedLog:
    """asyncio logs a traceback for every failed accept (out of descriptors: thousands a second);
    on ``loop`` they are counted and logged once per interval instead. Idempotent per loop."""
    handler = loop.get_exception_handler()
    if isinstance(getattr(handler, "accept_errors", None), RateLimitedLog):
        return handler.accept_errors
    accept_errors = RateLimitedLog("accept errors (the process is out of file descriptors or memory)")

    def exception_handler(loop, context):
        if context.get("message") == ACCEPT_ERROR:
            accept_errors.event(str(context.get("exception")))
        elif handler is not None:
            handler(loop, context)
        else:
            loop.default_exception_handler(context)

    exception_handler.accept_errors = accept_errors
    loop.set_exception_handler(exception_handler)
    return accept_errors
