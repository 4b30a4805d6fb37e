"""Benchmark and test tooling, kept out of the shipped server package: the load generator
(``python -m service bench``), the echo server, the server launcher, the /metrics reader, loopback
Prometheus and HAProxy, and the benchmark scripts that write the figures in docs/."""
