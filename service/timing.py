"""Where one request's time went on the server, sent back to its caller as W3C Server-Timing:
the ``server-timing`` trailing metadata of a gRPC call and the ``Server-Timing`` header of an HTTP
reply. A caller sees its own queue wait and batch compute without scraping the metrics."""
from __future__ import annotations

import re
from dataclasses import dataclass

HEADER = "server-timing"
_ENTRY = re.compile(r"\s*([A-Za-z0-9_-]+);dur=([0-9.]+)\s*")


@dataclass(slots=True)
class RequestTiming:
    """Seconds: in the queue (arrival to its batch being taken), its batch's merge and compute,
    and from arrival until its rows were handed out. The batch queue fills it in."""

    queue_s: float = 0.0
    compute_s: float = 0.0
    total_s: float = 0.0

    def header(self) -> str:
        """The Server-Timing value, in milliseconds as the standard has it."""
        return (f"queue;dur={self.queue_s * 1e3:.3f}, compute;dur={self.compute_s * 1e3:.3f}, "
                f"total;dur={self.total_s * 1e3:.3f}")

    @classmethod
    def parse(cls, value: str) -> "RequestTiming":
        """The timing a ``header()`` value carries (for clients and tests); unknown entries are skipped."""
        durations = {}
        for part in value.split(","):
            match = _ENTRY.fullmatch(part)
            if match is None:
                raise ValueError(f"{HEADER}: expected entries like 'queue;dur=1.5', received {part!r}")
            durations[match[1]] = float(match[2]) / 1e3
        return cls(durations.get("queue", 0.0), durations.get("compute", 0.0), durations.get("total", 0.0))
