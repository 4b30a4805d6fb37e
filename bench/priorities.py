"""Priority levels benchmark: what a high-priority caller gains under a low-priority flood, and
what priorities cost in throughput, in one run.

    python -m bench.priorities [--models models] [--duration 8] [--rounds 3] [--write]

Two servers of cifar-vgg with ``max_batch_size`` 8, pinned to the server core(s): ``on`` with
``priority_levels`` 2 (default level 2) and ``off`` without levels. A load process on the client
core(s) runs, over KServe gRPC with raw inputs:
  (a) high-priority callers alone: one request of 1 image at a time (priority 1), paced;
  (b) the same while 64 low-priority callers (priority 2, 1 image each, closed loop) flood the model,
      on ``on`` and on ``off`` (where every request shares the one FIFO);
  (c) images/s of the flood alone at concurrency 64 on ``on`` and ``off``, interleaved rounds, and
      the ratio on/off (target: within 5 %).
Batch compute time comes from the server's /metrics; each high-priority reply's Server-Timing
(service.timing) gives its own queue wait and the time from its arrival in the queue until its
batch was computed, the figure the issue bounds by two batch compute times. ``--write`` puts the tables into
docs/BENCHMARKS.md between the priorities markers.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import ROOT
from bench.launcher import launch_server, on_cores
from bench.loadgen_stats import percentile
from bench.processes import cores_text, parse_cores, server_totals
from bench.report import machine, write_section


SECTION = "priorities"
MODEL = "cifar-vgg"
MAX_BATCH = 8
FLOOD = 64
HIGH_GAP_S = 0.02


# -- the load process ----------------------------------------------------------------------------

async def _client(args) -> dict:
    import grpc
    import numpy as np

    from service.generated.inference import grpc_service_pb2 as pb
    from service.generated.inference import grpc_service_pb2_grpc
    from service.timing import HEADER, RequestTiming

    channel = grpc.aio.insecure_channel(f"127.0.0.1:{args.port}")
    stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32).tobytes()

    def request(priority: int) -> pb.ModelInferRequest:
        r = pb.ModelInferRequest(model_name=MODEL, raw_input_contents=[x])
        r.inputs.add(name="input", datatype="FP32", shape=[1, 3, 32, 32])
        if priority:
            r.parameters["priority"].uint64_param = priority
        return r

    low_req, high_req = request(2), request(1)
    stop_at = time.monotonic() + args.warmup + args.duration
    measure_from = time.monotonic() + args.warmup
    low_done = [0]
    high_ms: list[float] = []
    high_server: list[tuple[float, float]] = []  # (queue wait, arrival to computed) ms, from Server-Timing

    async def low() -> None:
        while time.monotonic() < stop_at:
            await stub.ModelInfer(low_req, timeout=60)
            if time.monotonic() >= measure_from:
                low_done[0] += 1

    async def high() -> None:
        while time.monotonic() < stop_at:
            start = time.perf_counter()
            call = stub.ModelInfer(high_req, timeout=60)
            await call
            if time.monotonic() >= measure_from:
                high_ms.append((time.perf_counter() - start) * 1e3)
                t = RequestTiming.parse(dict(await call.trailing_metadata())[HEADER])
                high_server.append((t.queue_s * 1e3, (t.queue_s + t.compute_s) * 1e3))
            await asyncio.sleep(HIGH_GAP_S)

    tasks = [low() for _ in range(args.flood)] + ([high()] if args.high else [])
    await asyncio.gather(*tasks)
    await channel.close()
    return {"images_per_s": low_done[0] / args.duration, "high_ms": high_ms, "high_server": high_server}


def client_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--flood", type=int, default=0)
    p.add_argument("--high", action="store_true")
    p.add_argument("--duration", type=float, default=8)
    p.add_argument("--warmup", type=float, default=2)
    print(json.dumps(asyncio.run(_client(p.parse_args(argv)))))


# -- the run -------------------------------------------------------------------------------------

def repository(source: Path, out: Path, levels: int) -> Path:
    """A repository with cifar-vgg only, max_batch_size 8, with ``levels`` priority levels."""
    shutil.copytree(source / MODEL, out / MODEL)
    path = out / MODEL / "config.json"
    config = json.loads(path.read_text())
    config["batching"].update(max_batch_size=MAX_BATCH, max_queue_size=1024, max_queue_delay_ms=0.0)
    if levels:
        config["batching"].update(priority_levels=levels, default_priority_level=levels)
    path.write_text(json.dumps(config, indent=2))
    return out


def run_load(args, server, flood: int, high: bool) -> dict:
    before = server_totals(server.metrics_port, MODEL)
    command = [sys.executable, "-m", "bench.priorities", "--client", "--port", str(server.port), "--flood", str(flood),
               "--duration", str(args.duration), "--warmup", str(args.warmup)] + (["--high"] if high else [])
    done = subprocess.run(on_cores(command, args.client_cores), cwd=ROOT, capture_output=True, text=True,
                          timeout=args.duration + args.warmup + 120)
    if done.returncode != 0:
        raise RuntimeError(f"load failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout)
    after = server_totals(server.metrics_port, MODEL)
    batches = max(after["batches"] - before["batches"], 1)
    result["batch_ms"] = 1e3 * (after["compute_s"] - before["compute_s"]) / batches
    result["mean_batch"] = (after["images"] - before["images"]) / batches
    return result


def main() -> None:
    if sys.argv[1:2] == ["--client"]:
        return client_main(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=Path, default=ROOT / "models")
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads of the server")
    p.add_argument("--server-cores", type=parse_cores, default=parse_cores("0"))
    p.add_argument("--client-cores", type=parse_cores, default=parse_cores("1"))
    p.add_argument("--write", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        servers = {}
        try:
            for name, levels in (("on", 2), ("off", 0)):
                repo = repository(args.models, tmp / f"repo-{name}", levels)
                servers[name] = launch_server(tmp, "--intra-op-threads", str(args.threads), "--instances", "1",
                                              "--log-level", "warning", models=repo, cores=args.server_cores,
                                              name=name, timeout=120)
            alone = run_load(args, servers["on"], 0, True)
            flooded = {name: run_load(args, servers[name], FLOOD, True) for name in ("on", "off")}
            rounds = {"on": [], "off": []}
            for _ in range(args.rounds):
                for name in ("on", "off"):
                    rounds[name].append(run_load(args, servers[name], FLOOD, False))
        finally:
            for server in servers.values():
                server.stop()
    text = report(args, alone, flooded, rounds)
    print(text)
    if args.write:
        print(f"written to {write_section(SECTION, text)}")


def report(args, alone: dict, flooded: dict, rounds: dict) -> str:
    batch_ms = statistics.median(r["batch_ms"] for name in rounds for r in rounds[name])
    rows = [("high-priority requests (1 image)", "server", "n", "round trip p50 / p99 ms",
             "server: queue wait p50 / p99 / max ms", "server: arrival to computed p50 / p99 / max ms",
             "arrival to computed max / batch compute")]
    for label, name, r in (("alone", "on", alone), ("under the flood", "on", flooded["on"]),
                           ("under the flood", "off", flooded["off"])):
        queued = [q for q, _ in r["high_server"]]
        computed = [c for _, c in r["high_server"]]
        rows.append((label, f"priorities {name}", str(len(r["high_ms"])),
                     f"{percentile(r['high_ms'], 50):.1f} / {percentile(r['high_ms'], 99):.1f}",
                     f"{percentile(queued, 50):.2f} / {percentile(queued, 99):.2f} / {max(queued):.2f}",
                     f"{percentile(computed, 50):.2f} / {percentile(computed, 99):.2f} / {max(computed):.2f}",
                     f"{max(computed) / batch_ms:.2f}"))
    on = [r["images_per_s"] for r in rounds["on"]]
    off = [r["images_per_s"] for r in rounds["off"]]
    ratio = statistics.median(on) / statistics.median(off)
    lines = [
        "## Priorities: a high-priority caller under a low-priority flood",
        "",
        f"`python -m bench.priorities --duration {args.duration:g} --rounds {args.rounds}"
        f"{' --write' if args.write else ''}`; {MODEL}, max_batch_size {MAX_BATCH}, one instance, "
        f"{args.threads} onnxruntime thread(s); server on {cores_text(args.server_cores)}, load on "
        f"{cores_text(args.client_cores)}. The flood: {FLOOD} low-priority callers (level 2) of 1 image, "
        f"closed loop; the high-priority caller (level 1) sends 1 image at a time, {HIGH_GAP_S * 1e3:g} ms apart. "
        f"Batch compute time (server metrics, median over the throughput runs): {batch_ms:.1f} ms per batch of "
        f"~{statistics.median(r['mean_batch'] for r in rounds['on']):.1f} images.",
        "Machine: " + machine() + ". Round trips are measured by the load process and include the "
        "transport (and the load process's own CPU time); the server's figures come from each reply's "
        "Server-Timing. The live test (tests/integration/test_priorities_live.py) holds every level-1 "
        "request under the flood to two batch compute times from arrival to computed.",
        "",
        "| " + " | ".join(rows[0]) + " |",
        "|" + "---|" * len(rows[0]),
        *("| " + " | ".join(r) + " |" for r in rows[1:]),
        "",
        f"Throughput of the flood alone at concurrency {FLOOD}, {args.rounds} interleaved rounds of "
        f"{args.duration:g} s: priorities on {', '.join(f'{v:.0f}' for v in on)} images/s, off "
        f"{', '.join(f'{v:.0f}' for v in off)} images/s; median on/off = **{ratio:.3f}** "
        f"(target >= 0.95: {'met' if ratio >= 0.95 else 'NOT met'}).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
