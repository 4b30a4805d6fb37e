"""Benchmark and test tooling, kept out of the shipped server package: the load generator
(``python -m bench.load``), the echo server, the server launcher, the /metrics reader, loopback
Prometheus and HAProxy, and the benchmark scripts that write the figures in docs/."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The checkout's root: bench/ is tooling of a checkout (run from it as ``python -m bench.<script>``)."""
