"""A closed-loop load of KServe v2 ModelInfer calls made with NVIDIA's own client, tritonclient.grpc.aio.

    python -m bench.triton_client --target HOST:PORT --model M [--batch 1] [--concurrency 1]
                                  [--duration 5] [--warmup 1] [--shape 3 32 32]

``concurrency`` callers share one client (one channel, as tritonclient is used) and each sends its
next request when the last is answered; the reply's scores are decoded as a user of the client
would. It prints one JSON object: requests, OK, errors by gRPC code, requests/s, images/s and
latency percentiles (ms) of the measured seconds. The same client loads either server, so the
comparison holds the client's own cost equal.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from collections import Counter

import numpy as np

from bench.loadgen_stats import percentile


async def load(target: str, model: str, shape: tuple[int, ...], batch: int, concurrency: int, duration: float,
               warmup: float, input_name: str = "input", output_name: str = "scores") -> dict:
    import tritonclient.grpc.aio as grpcclient
    from tritonclient.utils import InferenceServerException

    x = np.random.default_rng(batch).standard_normal((batch, *shape)).astype(np.float32)
    tensor = grpcclient.InferInput(input_name, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    outputs = [grpcclient.InferRequestedOutput(output_name)]
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    async with grpcclient.InferenceServerClient(target) as client:
        start = time.perf_counter()
        measure_from, end = start + warmup, start + warmup + duration

        async def caller() -> None:
            while (sent := time.perf_counter()) < end:
                try:
                    reply = await client.infer(model, [tensor], outputs=outputs, client_timeout=30)
                    reply.as_numpy(output_name)
                    if sent >= measure_from:
                        latencies.append(time.perf_counter() - sent)
                except InferenceServerException as exc:
                    if sent >= measure_from:
                        errors[str(exc.status() or "UNKNOWN")] += 1

        await asyncio.gather(*(caller() for _ in range(concurrency)))
    ms, ok = sorted(1e3 * t for t in latencies), len(latencies)
    return {"requests": ok + sum(errors.values()), "ok": ok, "errors": dict(errors), "error_count": sum(errors.values()),
            "requests_per_s": ok / duration, "images_per_s": ok * batch / duration,
            "latency_ms": {**{f"p{q}": percentile(ms, q) for q in (50, 90, 99)}, "max": percentile(ms, 100),
                           "mean": sum(ms) / ok if ok else math.nan}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.triton_client", description=__doc__.splitlines()[0])
    p.add_argument("--target", required=True, help="gRPC address HOST:PORT")
    p.add_argument("--model", required=True)
    p.add_argument("--shape", nargs=3, type=int, default=[3, 32, 32], help="per-image C H W (default 3 32 32)")
    p.add_argument("--batch", type=int, default=1, help="images per request (default 1)")
    p.add_argument("--concurrency", "-c", type=int, default=1, help="calls in flight (default 1)")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="unrecorded seconds first (default 1)")
    args = p.parse_args(argv)
    for flag, value, ok in (("--batch", args.batch, args.batch >= 1), ("--concurrency", args.concurrency,
                            args.concurrency >= 1), ("--duration", args.duration, args.duration > 0),
                            ("--warmup", args.warmup, args.warmup >= 0)):
        if not ok:
            p.error(f"{flag}: expected a positive number, got {value}")
    print(json.dumps(asyncio.run(load(args.target, args.model, tuple(args.shape), args.batch, args.concurrency,
                                      args.duration, args.warmup))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
