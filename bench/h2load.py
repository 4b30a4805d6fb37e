"""h2load (Debian ``nghttp2-client``) as a load generator: a C client that is never the bottleneck.

    request = grpc_request(model, batch, seed)            KServe v2 ModelInfer as one gRPC message
    request = http_request(model, batch, seed)            KServe v2 REST infer, binary tensor extension
    result = run(request, target, concurrency, duration, warmup, cores)   -> H2loadResult

h2load replays one request body: for gRPC, a length-prefixed message (1 byte 0, 4 bytes big-endian
length, the protobuf) over one HTTP/2 connection with ``concurrency`` streams; for HTTP/1.1,
``concurrency`` connections each with one request in flight (h2load does not pipeline a body). It
counts HTTP statuses, not grpc-status: a gRPC error still arrives as 200, so the caller counts OK
answers from the server's own metrics. Latency percentiles come from its per-request log.
"""
from __future__ import annotations

import math
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.launcher import on_cores
from bench.loadgen_stats import percentile

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


@dataclass(frozen=True)
class Request:
    """What h2load sends: the body, the path, the headers and whether it speaks HTTP/1.1."""

    body: bytes
    path: str
    headers: dict[str, str]
    images: int
    h1: bool = False


def frame(message: bytes) -> bytes:
    """One uncompressed gRPC message on the wire: flag 0, 4-byte big-endian length, the bytes."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def unframe(data: bytes) -> bytes:
    """The message of one gRPC frame (the inverse of ``frame``); ValueError if it is not one."""
    if len(data) < 5 or data[0] != 0 or int.from_bytes(data[1:5], "big") != len(data) - 5:
        raise ValueError(f"gRPC frame: expected flag 0 and a length of {len(data) - 5}, got {data[:5]!r}")
    return data[5:]


def images(shape: tuple[int, ...], batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, *shape)).astype("<f4")


def grpc_request(model: str, x: np.ndarray, input_name: str = "input", output_name: str = "scores") -> Request:
    """ModelInfer of ``x`` as raw FP32 input contents, framed for h2load. (The KServe stubs are
    imported here: a process that holds tritonclient's copy of them cannot import them too.)"""
    from service.generated.inference import grpc_service_pb2 as kpb

    request = kpb.ModelInferRequest(model_name=model)
    request.inputs.add(name=input_name, datatype="FP32", shape=x.shape)
    request.outputs.add(name=output_name)
    request.raw_input_contents.append(np.ascontiguousarray(x, "<f4").tobytes())
    return Request(frame(request.SerializeToString()), MODEL_INFER,
                   {"content-type": "application/grpc", "te": "trailers"}, len(x))


def http_request(model: str, x: np.ndarray, input_name: str = "input", output_name: str = "scores") -> Request:
    """The REST infer request of ``x`` with binary tensors both ways, over HTTP/1.1."""
    from bench.http_load import infer_path, request_body

    body, headers = request_body(x, input_name, output_name, "binary")
    return Request(body, infer_path(model, 0), {k.lower(): v for k, v in headers.items()}, len(x), h1=True)


@dataclass
class H2loadResult:
    """One h2load run: counts, requests/s and latencies (ms) of the measured requests (not the warm-up's)."""

    done: int
    succeeded: int  # HTTP 2xx (a gRPC error counts here too)
    failed: int
    errored: int
    requests_per_s: float
    latency_ms: dict[str, float] = field(default_factory=dict)
    images: int = 1

    @property
    def images_per_s(self) -> float:
        return self.requests_per_s * self.images


SUMMARY = re.compile(r"finished in [\d.]+m?s, ([\d.]+) req/s")
COUNTS = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored")


def parse(output: str) -> H2loadResult:
    """The figures of h2load's text report; ValueError naming what is missing."""
    summary, counts = SUMMARY.search(output), COUNTS.search(output)
    if not summary or not counts:
        raise ValueError(f"h2load output: expected 'finished in ...' and 'requests: ...' lines, got:\n{output[-2000:]}")
    return H2loadResult(int(counts[3]), int(counts[4]), int(counts[5]), int(counts[6]), float(summary[1]))


def percentiles(log: str, measured: int) -> dict[str, float]:
    """p50, p90, p99, p100 and mean latency (ms; NaN without answers) of the last ``measured`` requests of an h2load
    ``--log-file`` (columns: start µs since the epoch, HTTP status, µs until the end of the response;
    rows in the order answered), 2xx answers only. The last ones, because h2load logs the warm-up's
    requests too in some runs (HTTP/1.1) and not in others."""
    rows = [line.split("\t") for line in log.splitlines() if line.strip()][-measured:] if measured else []
    ms = sorted(int(row[2]) / 1e3 for row in rows if row[1].startswith("2"))
    return {**{f"p{q}": percentile(ms, q) for q in (50, 90, 99, 100)}, "mean": statistics.fmean(ms) if ms else math.nan}


def command(request: Request, url: str, concurrency: int, duration: float, warmup: float, data: Path,
            log: Path) -> list[str]:
    """The h2load command line for one run."""
    connections, streams = (concurrency, 1) if request.h1 else (1, concurrency)
    return ["h2load", *(["--h1"] if request.h1 else []), "-c", str(connections), "-m", str(streams),
            "-D", f"{round(duration * 1000)}ms", "--warm-up-time", f"{round(warmup * 1000)}ms",
            "-d", str(data), "--log-file", str(log),
            *(a for k, v in request.headers.items() for a in ("-H", f"{k}: {v}")), url + request.path]


def run(request: Request, target: str, concurrency: int, duration: float, warmup: float = 1.0,
        cores: frozenset[int] | None = None) -> H2loadResult:
    """One closed-loop h2load run of ``request`` against ``target`` (HOST:PORT), on ``cores``."""
    if shutil.which("h2load") is None:
        raise RuntimeError("h2load: not found; install Debian's nghttp2-client (scripts/install.sh does)")
    with tempfile.TemporaryDirectory(prefix="h2load-") as tmp:
        data, log = Path(tmp) / "request.bin", Path(tmp) / "requests.log"
        data.write_bytes(request.body)
        argv = command(request, f"http://{target}", concurrency, duration, warmup, data, log)
        done = subprocess.run(on_cores(argv, cores), capture_output=True, text=True, timeout=duration + warmup + 60)
        if done.returncode != 0:
            why = f" ({signal.Signals(-done.returncode).name})" if done.returncode < 0 else ""
            raise RuntimeError(f"h2load exited with {done.returncode}{why}\n{' '.join(argv)}\n"
                               f"{done.stdout[-2000:]}{done.stderr}")
        result = parse(done.stdout)
        result.latency_ms = percentiles(log.read_text(), result.done) if log.exists() else {}
    result.images = request.images
    return result
