"""Workers across cores: images/s of ``serve --workers 2`` against ``--workers 1``, measured with h2load.

    python -m bench.workers [--rounds 5] [--duration 8] [--clients 16] [--streams 4] [--model cifar-tiny]

Starts one server of each kind on free ports (unpinned: both may use both cores), then, round after
round, replays one KServe ModelInfer request (1 image) with h2load (Debian ``nghttp2-client``, a C
client) against each in turn, alternating which goes first. h2load opens ``--clients`` HTTP/2
connections with ``--streams`` calls in flight on each: the kernel spreads connections, not calls,
over the workers. It counts HTTP 200, not grpc-status, so each run also reads the server's own
/metrics and fails if any call was answered other than OK (or CANCELLED: h2load's last calls). Prints one line per run and the median
ratio (2 workers / 1 worker) with its range.
"""
from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from bench import scrape
from bench.launcher import MODELS, ServerProcess, launch_server
from service.generated.inference import grpc_service_pb2 as kpb

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


def grpc_body(model: str, shape: tuple[int, ...]) -> bytes:
    """One ModelInfer of one random image, as one length-prefixed gRPC message."""
    x = np.random.default_rng(0).standard_normal((1, *shape)).astype("<f4")
    message = kpb.ModelInferRequest(model_name=model, inputs=[kpb.ModelInferRequest.InferInputTensor(
        name="input", datatype="FP32", shape=list(x.shape))], raw_input_contents=[x.tobytes()]).SerializeToString()
    return b"\x00" + len(message).to_bytes(4, "big") + message


def h2load(port: int, body_file: Path, clients: int, streams: int, duration: float) -> float:
    """Requests/s that h2load measured over ``duration`` seconds after a 1 s warm-up."""
    command = ["h2load", "-c", str(clients), "-m", str(streams), "-D", f"{duration:g}", "--warm-up-time", "1",
               "-H", "content-type: application/grpc", "-H", "te: trailers", "-d", str(body_file),
               f"http://127.0.0.1:{port}{MODEL_INFER}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60)
    out = done.stdout + done.stderr
    found = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)
    failed = re.search(r"requests: .* (\d+) failed, (\d+) errored", out)
    if found is None or failed is None or failed.groups() != ("0", "0"):
        raise RuntimeError(f"h2load failed:\n{out[-2000:]}")
    return float(found.group(1))


def failed(server: ServerProcess, model: str) -> float:
    """Calls of ``model`` answered other than OK or CANCELLED (h2load cancels the calls in flight
    when its time is up: at most clients x streams per run)."""
    text = server.metrics_text()
    return scrape.metric(text, "convnet_requests_total", model=model) - sum(
        scrape.metric(text, "convnet_requests_total", model=model, code=code) for code in ("OK", "CANCELLED"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=int, default=8, help="seconds measured per run (after 1 s warm-up)")
    p.add_argument("--clients", type=int, default=16, help="h2load connections")
    p.add_argument("--streams", type=int, default=4, help="calls in flight per connection")
    p.add_argument("--model", default="cifar-tiny")
    p.add_argument("--models", type=Path, default=MODELS)
    args = p.parse_args(argv)
    if shutil.which("h2load") is None:
        p.error("h2load not found: install Debian nghttp2-client (scripts/install.sh)")
    import json

    shape = tuple(json.loads((args.models / args.model / "config.json").read_text())["input"]["shape"])
    work = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    body = work / "request.bin"
    body.write_bytes(grpc_body(args.model, shape))
    servers = {n: launch_server(work, "--workers", str(n), models=args.models, name=f"workers-{n}",
                                env={"CONVNET_DRAIN_S": "0"}) for n in (1, 2)}
    rates: dict[int, list[float]] = {1: [], 2: []}
    try:
        for round_ in range(args.rounds):
            for n in ((1, 2) if round_ % 2 == 0 else (2, 1)):
                rate = h2load(servers[n].port, body, args.clients, args.streams, args.duration)
                if failed(servers[n], args.model):
                    raise RuntimeError(f"--workers {n}: calls failed:\n{servers[n].metrics_text()}")
                rates[n].append(rate)
                print(f"round {round_ + 1} --workers {n}: {rate:,.0f} images/s", flush=True)
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    ratios = [two / one for one, two in zip(rates[1], rates[2])]
    print(f"{args.model}, h2load -c {args.clients} -m {args.streams}, {args.rounds} interleaved rounds of "
          f"{args.duration:g} s: 1 worker median {statistics.median(rates[1]):,.0f} images/s "
          f"({min(rates[1]):,.0f}-{max(rates[1]):,.0f}), 2 workers median {statistics.median(rates[2]):,.0f} "
          f"({min(rates[2]):,.0f}-{max(rates[2]):,.0f}); ratio 2/1 per round median {statistics.median(ratios):.2f} "
          f"({min(ratios):.2f}-{max(ratios):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
