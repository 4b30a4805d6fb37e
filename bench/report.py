"""What every benchmark script shares: the machine's description and its own section of
docs/BENCHMARKS.md, between ``<!-- name -->`` and ``<!-- /name -->``, rewritten on each run
(``write_doc`` does the same between any two markers of any document)."""
from __future__ import annotations

import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"
HEADER = "# Benchmarks\n\nMeasured figures; each section is written by the script it names.\n"


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform calls the machine."""
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine() -> str:
    """CPU model, cores, OS, Python and the versions of the libraries the figures depend on."""
    import google.protobuf
    import grpc
    import numpy
    import onnxruntime

    return (f"{cpu_name()}, {os.cpu_count()} cores; Linux {platform.release()}; Python {platform.python_version()}, "
            f"NumPy {numpy.__version__}, onnxruntime {onnxruntime.__version__}, grpcio {grpc.__version__}, "
            f"protobuf {google.protobuf.__version__}")


def command_line(script: str, argv: list[str] | None = None) -> str:
    """How a benchmark was started, for its section: ``python SCRIPT ARGS`` (``argv`` or sys.argv's), less --write."""
    return " ".join(["python", script, *(a for a in (argv if argv is not None else sys.argv[1:]) if a != "--write")])


def median_seconds(fn, min_time: float, warmup: int = 2, min_runs: int = 5) -> float:
    """Median wall time of ``fn()`` after ``warmup`` unrecorded calls, over at least ``min_runs``
    calls and ``min_time`` seconds."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    while len(times) < min_runs or sum(times) < min_time:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def spread(values: list[float], fmt: str) -> str:
    """``median (min-max)`` of ``values``, each number formatted with ``fmt`` (``',.0f'``, say)."""
    return (f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)}-"
            f"{format(max(values), fmt)})")


def write_section(name: str, text: str, doc: Path | None = None) -> Path:
    """Put ``text`` between the section's markers in ``doc`` (docs/BENCHMARKS.md), replacing what was
    there, or append the section; the rest of the file stays as it is."""
    doc = doc or BENCHMARKS
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    old = doc.read_text() if doc.exists() else HEADER
    section = f"{start}\n{text}\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    new = pattern.sub(lambda _: section, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + section + "\n"
    doc.write_text(new)
    return doc


def publish(name: str, text: str, write: bool) -> None:
    """Print a benchmark's section and, with ``write`` (its --write), put it into docs/BENCHMARKS.md."""
    print(text)
    if write:
        print(f"wrote {write_section(name, text)}")


def write_doc(text: str, path: Path, begin: str, end: str) -> None:
    """Replace what lies between the markers ``begin`` and ``end`` of ``path`` with ``text``."""
    doc = path.read_text()
    if begin not in doc or end not in doc:
        raise SystemExit(f"{path}: expected the markers {begin} and {end}")
    head, rest = doc.split(begin, 1)
    path.write_text(head + begin + "\n" + text + "\n" + end + rest.split(end, 1)[1])
