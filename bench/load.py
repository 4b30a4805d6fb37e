"""``python -m bench.load``: load a running server (or the echo server) and print what it sustains.

Asks the server for the model's input shape, builds one request of B random images as a raw
float32 tensor over the project's API (``classify``) or KServe v2 (``kserve``), checks one reply,
then runs the load generator (bench/loadgen.py): closed loop at ``--concurrency`` or open loop
at ``--rate``, bounded by ``--duration`` and ``--requests``. Prints requests/s, images/s, latency
percentiles and failures by status code, or one JSON object with ``--json``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from dataclasses import dataclass

import grpc
import numpy as np

from service.generated.convnet.v1 import convnet_pb2 as pb
from bench.loadgen import LoadGenerator, LoadSettings, RunResult, Workload, channel_options

PROG = "python -m bench.load"
CLASSIFY = "/convnet.v1.Classifier/Classify"
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
MAX_DURATION_S = 3600.0
MAX_REQUESTS = 10_000_000
MAX_CONCURRENCY = 10_000
DEFAULT_REQUESTS = 1_000_000
CALLS_PER_CHANNEL = 16
MAX_AUTO_CHANNELS = 8


class BenchError(RuntimeError):
    """The benchmark cannot run (server unreachable, unknown model, a reply of the wrong shape)."""


class ArgumentError(BenchError):
    """A flag's value is outside what the benchmark accepts."""


@dataclass(frozen=True)
class ModelInput:
    """What a request needs to know about the model."""

    name: str
    version: int
    input_name: str
    output_name: str
    shape: tuple[int, int, int]  # (C, H, W) per image
    classes: int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", default="127.0.0.1:8001", help="server address HOST:PORT (default 127.0.0.1:8001)")
    p.add_argument("--api", choices=["classify", "kserve", "http"], default="classify",
                   help="convnet.v1 Classify, KServe v2 ModelInfer, or KServe v2 over HTTP/REST "
                        "(--target HOST:8000) (default classify)")
    p.add_argument("--http-data", choices=["binary", "json"], default="binary",
                   help="--api http: tensors as the binary data extension or as JSON, both ways (default binary)")
    p.add_argument("--model", help="model name (default with --api classify: the first ready model listed)")
    p.add_argument("--version", type=int, default=0, help="model version (default: the server's default)")
    load = p.add_mutually_exclusive_group()
    load.add_argument("--concurrency", "-c", type=int, help="closed loop: calls kept in flight (default 1)")
    load.add_argument("--rate", "-r", type=float, help="open loop: requests started per second")
    p.add_argument("--batch", "-b", type=int, default=1, help="images per request (default 1)")
    p.add_argument("--duration", "-d", type=float, default=10.0,
                   help=f"seconds of measured load (default 10, at most {MAX_DURATION_S:g})")
    p.add_argument("--requests", "-n", type=int, default=DEFAULT_REQUESTS,
                   help=f"stop after this many requests (default {DEFAULT_REQUESTS:,}, at most {MAX_REQUESTS:,})")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of unrecorded load first (default 1)")
    p.add_argument("--channels", type=int, default=0,
                   help=f"gRPC channels (connections); 0 = one per {CALLS_PER_CHANNEL} calls in flight, "
                        f"at most {MAX_AUTO_CHANNELS} (default)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per call before DEADLINE_EXCEEDED (default 10)")
    p.add_argument("--max-inflight", type=int, default=4096, help="open loop: most calls open at once (default 4096)")
    p.add_argument("--top-k", type=int, default=0, help="classify: labels per image in the reply (default 0 = 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random images")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the text report")


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse values outside the hard bounds, naming the flag, the bound and the value."""
    rules = [("--batch", args.batch, args.batch >= 1, "an integer >= 1"),
             ("--duration", args.duration, 0 < args.duration <= MAX_DURATION_S, f"seconds in (0, {MAX_DURATION_S:g}]"),
             ("--requests", args.requests, 1 <= args.requests <= MAX_REQUESTS, f"an integer in 1..{MAX_REQUESTS:,}"),
             ("--warmup", args.warmup, 0 <= args.warmup <= MAX_DURATION_S, f"seconds in [0, {MAX_DURATION_S:g}]"),
             ("--channels", args.channels, 0 <= args.channels <= MAX_CONCURRENCY, f"an integer in 0..{MAX_CONCURRENCY}"),
             ("--timeout", args.timeout, args.timeout > 0, "seconds > 0"),
             ("--max-inflight", args.max_inflight, 1 <= args.max_inflight <= MAX_CONCURRENCY,
              f"an integer in 1..{MAX_CONCURRENCY}"),
             ("--top-k", args.top_k, args.top_k >= 0, "an integer >= 0"),
             ("--version", args.version, args.version >= 0, "0 (the default) or a version number")]
    if args.concurrency is not None:
        rules.append(("--concurrency", args.concurrency, 1 <= args.concurrency <= MAX_CONCURRENCY,
                      f"an integer in 1..{MAX_CONCURRENCY}"))
    if args.rate is not None:
        rules.append(("--rate", args.rate, 0 < args.rate <= 1e6, "requests/s in (0, 1000000]"))
    for flag, value, ok, expected in rules:
        if not ok:
            raise ArgumentError(f"{flag}: expected {expected}, got {value!r}")
    if args.api == "kserve" and not args.model:
        raise ArgumentError("--model: expected a model name with --api kserve (KServe v2 has no model list), got none")


def settings_from(args: argparse.Namespace) -> LoadSettings:
    concurrency = None if args.rate is not None else (args.concurrency or 1)
    channels = args.channels or min(MAX_AUTO_CHANNELS, math.ceil((concurrency or args.max_inflight) / CALLS_PER_CHANNEL))
    return LoadSettings(concurrency=concurrency, rate=args.rate, duration_s=args.duration, max_requests=args.requests,
                        channels=channels, timeout_s=args.timeout, warmup_s=args.warmup, max_inflight=args.max_inflight)


def concrete_shape(shape, resize) -> tuple[int, int, int]:
    """The per-image (C, H, W), with the resize size in place of variable (-1) H and W."""
    c, h, w = (int(d) for d in shape)
    rh, rw = (int(d) for d in resize) if len(resize) == 2 else (32, 32)
    return c, h if h > 0 else rh, w if w > 0 else rw


async def describe(target: str, api: str, model: str | None, version: int, timeout: float) -> ModelInput:
    """The model's input as the server reports it (GetModelInfo, or KServe ModelMetadata)."""
    if api == "http":
        from bench.http_load import describe_http

        try:
            name, input_name, output_name, shape, classes = await describe_http(target, model, version, timeout)
        except (ValueError, OSError, asyncio.TimeoutError) as exc:
            raise BenchError(f"{target}: cannot describe model {model!r} over HTTP: {exc}") from None
        return ModelInput(name, version, input_name, output_name, concrete_shape(shape, ()), classes)
    async with grpc.aio.insecure_channel(target, options=channel_options()) as channel:
        try:
            if api == "kserve":
                from service.generated.inference import grpc_service_pb2 as kpb

                method = channel.unary_unary("/inference.GRPCInferenceService/ModelMetadata",
                                             request_serializer=kpb.ModelMetadataRequest.SerializeToString,
                                             response_deserializer=kpb.ModelMetadataResponse.FromString)
                meta = await method(kpb.ModelMetadataRequest(name=model, version=str(version or "")), timeout=timeout)
                shape = concrete_shape(meta.inputs[0].shape[1:], ())
                classes = int(meta.outputs[0].shape[1])
                return ModelInput(meta.name, version, meta.inputs[0].name, meta.outputs[0].name, shape, classes)
            info_call = channel.unary_unary("/convnet.v1.Classifier/GetModelInfo",
                                            request_serializer=pb.GetModelInfoRequest.SerializeToString,
                                            response_deserializer=pb.ModelInfo.FromString)
            if not model:
                list_call = channel.unary_unary("/convnet.v1.Classifier/ListModels",
                                                request_serializer=pb.ListModelsRequest.SerializeToString,
                                                response_deserializer=pb.ListModelsResponse.FromString)
                ready = sorted(m.name for m in (await list_call(pb.ListModelsRequest(), timeout=timeout)).models if m.ready)
                if not ready:
                    raise BenchError(f"{target}: the server lists no ready model")
                model = ready[0]
            info = await info_call(pb.GetModelInfoRequest(model=model, version=version), timeout=timeout)
        except grpc.aio.AioRpcError as err:
            raise BenchError(f"{target}: cannot describe model {model!r}: {err.code().name}: {err.details()}") from None
    if not info.ready:
        raise BenchError(f"{target}: model {info.name} is not ready: {info.not_ready_reason}")
    shape = concrete_shape(info.input.shape, info.preprocessing.resize)
    return ModelInput(info.name, version, info.input.name, info.output.name, shape, int(info.output.shape[0]))


def build_workload(api: str, model: ModelInput, batch: int, seed: int, top_k: int = 0,
                   http_data: str = "binary") -> Workload:
    """One request of ``batch`` random images, serialized once."""
    x = np.random.default_rng(seed).standard_normal((batch, *model.shape)).astype("<f4")
    if api == "http":
        from bench.http_load import infer_path, request_body

        body, headers = request_body(x, model.input_name, model.output_name, http_data)
        return Workload(infer_path(model.name, model.version), body, batch, headers)
    if api == "kserve":
        from service.generated.inference import grpc_service_pb2 as kpb

        request = kpb.ModelInferRequest(model_name=model.name, model_version=str(model.version or ""))
        request.inputs.add(name=model.input_name, datatype="FP32", shape=x.shape)
        request.outputs.add(name=model.output_name)
        request.raw_input_contents.append(x.tobytes())
        return Workload(MODEL_INFER, request.SerializeToString(), batch)
    request = pb.ClassifyRequest(model=model.name, version=model.version, top_k=top_k,
                                 tensor=pb.Tensor(shape=x.shape, data=x.tobytes()))
    return Workload(CLASSIFY, request.SerializeToString(), batch)


async def probe(target: str, api: str, workload: Workload, model: ModelInput, timeout: float) -> None:
    """Send the request once and check the reply holds one result per image."""
    if api == "http":
        from bench.http_load import probe_http

        try:
            shape, values = await probe_http(target, workload.method, workload.payload, workload.headers, timeout)
        except (ValueError, OSError, asyncio.TimeoutError) as exc:
            raise BenchError(str(exc)) from None
        if shape != [workload.images, model.classes] or values != workload.images * model.classes:
            raise BenchError(f"{target}: reply: expected {workload.images} results of {model.classes} scores, "
                             f"got output shape {shape} with {values} values")
        return
    async with grpc.aio.insecure_channel(target, options=channel_options()) as channel:
        try:
            raw = await channel.unary_unary(workload.method)(workload.payload, timeout=timeout)
        except grpc.aio.AioRpcError as err:
            raise BenchError(f"{target}: the first request failed: {err.code().name}: {err.details()}") from None
    if api == "kserve":
        from service.generated.inference import grpc_service_pb2 as kpb

        reply = kpb.ModelInferResponse.FromString(raw)
        rows = reply.outputs[0].shape[0] if reply.outputs else 0
        size = len(reply.raw_output_contents[0]) if reply.raw_output_contents else 0
        ok = rows == workload.images and size == 4 * workload.images * model.classes
        got = f"output shape {list(reply.outputs[0].shape) if reply.outputs else []}, {size} raw bytes"
    else:
        reply = pb.ClassifyResponse.FromString(raw)
        ok = len(reply.results) == workload.images and all(len(r.scores) == model.classes for r in reply.results)
        got = f"{len(reply.results)} results of {[len(r.scores) for r in reply.results][:4]} scores"
    if not ok:
        raise BenchError(f"{target}: reply: expected {workload.images} results of {model.classes} scores, got {got}")


async def run_bench(args: argparse.Namespace) -> tuple[ModelInput, RunResult]:
    check_arguments(args)
    model = await describe(args.target, args.api, args.model, args.version, args.timeout)
    workload = build_workload(args.api, model, args.batch, args.seed, args.top_k, args.http_data)
    await probe(args.target, args.api, workload, model, args.timeout)
    result = await LoadGenerator(args.target, workload, settings_from(args)).run()
    result.extra.update(target=args.target, api=args.api, model=model.name, version=model.version, batch=args.batch,
                        request_bytes=len(workload.payload))
    if args.api == "http":
        result.extra["http_data"] = args.http_data
    return model, result


def report(result: RunResult) -> str:
    """The text report of one run."""
    d = result.to_dict()
    s = result.summary
    load = (f"closed loop, concurrency {d['concurrency']}" if d["mode"] == "closed"
            else f"open loop, {d['rate']:g} requests/s")
    version = f" v{d['version']}" if d["version"] else ""
    lines = [
        f"bench: {d['model']}{version} over {d['api']}{' (' + d['http_data'] + ')' if 'http_data' in d else ''} "
        f"at {d['target']}: {load}, {d['batch']} image(s) per request "
        f"({d['request_bytes']:,} bytes), {d['channels']} channel(s)",
        f"  {s.sent:,} requests sent in {s.elapsed_s:.2f} s: {s.ok:,} OK, {s.error_count:,} failed"
        + (f", {d['skipped']:,} skipped (max in flight reached)" if d.get("skipped") else ""),
        f"  throughput   {s.requests_per_s:,.1f} requests/s   {s.images_per_s:,.1f} images/s",
        "  latency ms   " + "   ".join(f"{k} {v:.3f}" for k, v in s.latency_ms.items() if k != "mean"),
        "  failures     " + (", ".join(f"{code} {n:,}" for code, n in s.errors.items()) or "none"),
        f"  client CPU   {result.client_cpu:.0%} of one core",
    ]
    if "send_late_ms" in d:
        late = d["send_late_ms"]
        lines.append(f"  sends late   p50 {late['p50']:.3f}   p99 {late['p99']:.3f}   max {late['max']:.3f} ms "
                     "behind the schedule")
    return "\n".join(lines)


def bench_command(args: argparse.Namespace) -> int:
    """Exit status 0 when the run finished (failed requests are reported, not fatal), 1 when it
    could not run, 2 for a bad flag."""
    try:
        _, result = asyncio.run(run_bench(args))
    except (BenchError, TimeoutError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ArgumentError) else 1
    print(json.dumps(result.to_dict()) if args.json else report(result), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    add_arguments(parser)
    return bench_command(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
