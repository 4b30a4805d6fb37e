"""Where a served request's time goes beyond gRPC's transport, piece by piece, on one core.

    python -m bench.overheads [--models models] [--model cifar-tiny cifar-vgg] [--core 0] [--write]

bench/serving.py compares the server with its compute limit and its transport limit; this takes
the difference apart, in one process pinned to one core, without gRPC:
  compute: one image's session.run back-to-back, and after the core slept 1 ms, as a lone
      request's compute does (caches and the core's state go cold in between);
  hand-off: event loop -> instance thread -> event loop with the batch queue's InstanceThread,
      against a plain call on the loop;
  handler: the convnet.v1 Classify servicer called in-process by C callers at once (threads, as
      the gRPC transport runs it; the echo's coroutine handler from C coroutines): CPU per
      request with the model's compute, and with precomputed rows in its place (the plumbing:
      validation, queue, metrics, reply); and the same for the echo server's --compute handler
      (bench/serving.py's floor: the queue without the server's per-request work), so that the
      difference is what that work costs. Request parsing and reply encoding are gRPC's, not here.
``--write`` puts the table into docs/BENCHMARKS.md between the overheads markers.
"""
from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

from bench import ROOT
from bench.echo import ComputeWorker, EchoClassifier, EchoReplies
from bench.report import command_line, machine, publish
from service import idle
from service.config import ServerConfig
from service.generated.convnet.v1 import convnet_pb2 as pb
from bench.instances import InstanceThread
from service.metrics import Metrics
from service.models import ModelRegistry
from service.scores import Scored, score
from service.servicers.classifier import ClassifierServicer


MODELS = ("cifar-tiny", "cifar-vgg")
IDLE_GAP_S = 1e-3


def median_ms(fn, count: int, before=None) -> float:
    """Median milliseconds of ``fn()`` over ``count`` calls, each after ``before()`` if given."""
    times = []
    for _ in range(count):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def compute_after_idle(served, spec, count: int) -> tuple[float, float]:
    """(back-to-back, after IDLE_GAP_S asleep) median ms of one image's compute."""
    x = np.random.default_rng(0).standard_normal((1, *spec.example_shape())).astype(np.float32)
    compute = served.queue.compute
    median_ms(lambda: compute(0, x), 20)
    return median_ms(lambda: compute(0, x), count), median_ms(lambda: compute(0, x), count,
                                                                lambda: time.sleep(IDLE_GAP_S))


async def hand_off(count: int) -> tuple[float, float]:
    """(through an InstanceThread, inline) median ms of a round trip from the loop and back."""
    thread = InstanceThread("hand-off")
    loop = asyncio.get_running_loop()

    async def through_thread() -> None:
        done = loop.create_future()
        thread.run(lambda: None, lambda outcome, failed: done.set_result(outcome))
        await done

    async def inline() -> None:
        done = loop.create_future()
        done.set_result(None)
        await done

    results = []
    for trip in (through_thread, inline):
        times = []
        for _ in range(count):
            start = time.perf_counter()
            await trip()
            times.append(time.perf_counter() - start)
        results.append(statistics.median(times) * 1e3)
    thread.stop()
    return results[0], results[1]


class NoDeadline:
    """The part of a call's context that Classify uses on success: grpc.aio's (the echo's coroutine
    handler) and grpcio's synchronous one (the server's handler, on a thread)."""

    def time_remaining(self):
        return None

    def add_callback(self, callback) -> bool:
        return True

    def abort(self, code, message):
        raise RuntimeError(f"{code.name}: {message}")


async def handler_cpu_ms(servicer: ClassifierServicer | EchoClassifier, request: pb.ClassifyRequest, callers: int,
                         seconds: float) -> float:
    """CPU ms per request of ``callers`` concurrent Classify calls for about ``seconds``: coroutines on
    this loop for a coroutine handler, threads of their own for a plain one (the server's)."""
    context = NoDeadline()
    classify = servicer.Classify
    if not inspect.iscoroutinefunction(classify):
        return await asyncio.to_thread(threaded_cpu_ms, classify, request, callers, seconds)

    async def caller(stop_at: float, counts: list[int]) -> None:
        while time.perf_counter() < stop_at:
            await classify(request, context)
            counts[0] += 1

    await asyncio.gather(*(caller(time.perf_counter() + 0.2, [0]) for _ in range(callers)))  # warm-up
    counts = [0]
    cpu = time.process_time()
    await asyncio.gather(*(caller(time.perf_counter() + seconds, counts) for _ in range(callers)))
    return (time.process_time() - cpu) * 1e3 / max(counts[0], 1)


def threaded_cpu_ms(classify, request: pb.ClassifyRequest, callers: int, seconds: float) -> float:
    """``handler_cpu_ms`` for a plain handler: ``callers`` threads call it in a loop."""
    context = NoDeadline()

    def run(stop_at: float) -> list[int]:
        counts = [0] * callers

        def caller(i: int) -> None:
            while time.perf_counter() < stop_at:
                classify(request, context)
                counts[i] += 1

        threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return counts

    run(time.perf_counter() + 0.2)  # warm-up
    cpu = time.process_time()
    done = sum(run(time.perf_counter() + seconds))
    return (time.process_time() - cpu) * 1e3 / max(done, 1)


def precomputed(rows: int, classes: int):
    """A compute that returns the first n of ``rows`` precomputed rows: the queue without onnxruntime."""
    done = score(np.random.default_rng(0).standard_normal((rows, classes)).astype(np.float32))
    return lambda instance, batch: Scored(*(a[:len(batch)] for a in done))


async def measure(args) -> list[tuple[str, str, float]]:
    config = ServerConfig(models=args.models, intra_op_threads=args.threads)
    metrics = Metrics()
    registry = await asyncio.to_thread(ModelRegistry.load, config, metrics)
    servicer = ClassifierServicer(registry, config, metrics, None)
    floor = EchoClassifier(EchoReplies({m.name: m.spec for m in registry.models.values() if m.spec}),
                           ComputeWorker(registry))
    rows = []
    trip, inline = await hand_off(args.count)
    rows += [("-", "hand-off round trip, loop -> instance thread -> loop (median)", trip),
             ("-", "the same on the loop, no thread (median)", inline)]
    for name in args.model:
        model = registry.get(name)
        served, spec = model.default, model.spec
        back_to_back, after_idle = compute_after_idle(served, spec, args.count)
        rows += [(name, "compute of 1 image, back-to-back (median)", back_to_back),
                 (name, f"compute of 1 image after {IDLE_GAP_S * 1e3:g} ms idle (median)", after_idle)]
        x = np.random.default_rng(1).standard_normal((1, *spec.example_shape())).astype(np.float32)
        request = pb.ClassifyRequest(model=name, tensor=pb.Tensor(shape=x.shape, data=x.tobytes()))
        real = served.queue.compute
        for callers in args.callers:
            rows.append((name, f"handler CPU per request, C={callers}, with compute",
                         await handler_cpu_ms(servicer, request, callers, args.seconds)))
            served.queue.compute = precomputed(served.batching.max_batch_size, spec.classes)
            rows.append((name, f"handler CPU per request, C={callers}, plumbing only",
                         await handler_cpu_ms(servicer, request, callers, args.seconds)))
            rows.append((name, f"echo --compute handler CPU per request, C={callers}, plumbing only",
                         await handler_cpu_ms(floor, request, callers, args.seconds)))
            served.queue.compute = real
    for model in registry.models.values():
        for version in model.versions.values():
            if version.queue is not None:
                await version.queue.close(0)
    return rows


def report(args, rows, command: str) -> str:
    lines = ["## Serving: where a request's time goes beyond the transport", "",
             f"Command: `{command}`  ", f"Machine: {machine()}.", "",
             f"One process pinned to core {args.core}, onnxruntime with {args.threads} intra-op thread(s), no gRPC: "
             "the pieces that bench/serving.py's served-vs-echo difference is made of. *Handler* calls the "
             "convnet.v1 Classify servicer in-process with already parsed requests (parsing and encoding are "
             "gRPC's, in the echo server's time too); *plumbing only* replaces onnxruntime by precomputed rows; "
             "*echo --compute handler* is the floor's (bench/serving.py): the same batch queue, none of the "
             "server's per-request work (validation, metrics, scores into the reply).", "",
             "| model | measurement | ms |", "| --- | --- | ---: |",
             *[f"| {model} | {what} | {value:.3f} |" for model, what, value in rows]]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.overheads", description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=ROOT / "models", help="model repository (default models/)")
    p.add_argument("--model", nargs="+", default=list(MODELS))
    p.add_argument("--core", type=int, default=0, help="the one core to run on (default 0)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    p.add_argument("--callers", nargs="+", type=int, default=[1, 64], help="concurrent handler calls (default 1 64)")
    p.add_argument("--seconds", type=float, default=2.0, help="seconds per handler measurement (default 2)")
    p.add_argument("--count", type=int, default=500, help="calls per median (default 500)")
    p.add_argument("--write", action="store_true", help="write the section of docs/BENCHMARKS.md")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.core not in os.sched_getaffinity(0):
        print(f"bench/overheads.py: error: --core: expected one of {sorted(os.sched_getaffinity(0))}, got {args.core}",
              file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {args.core})
    rows = idle.run(measure(args))
    command = command_line("-m bench.overheads", argv)
    text = report(args, rows, command)
    publish('overheads', text, args.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
