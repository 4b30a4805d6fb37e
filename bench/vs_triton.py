"""Benchmark against the real Triton Inference Server: the same ONNX files, clients and core.

    python -m bench.vs_triton [--models cifar-tiny fashion cifar-vgg resnet18] [--concurrency 1 8 64]
                              [--clients tritonclient h2load http] [--rounds 3] [--duration 2]
                              [--warmup 0.5] [--server-cores 1] [--client-cores 0] [--write]

This server (``python -m service serve``, one instance of one intra-op thread) and Triton 2.51
(bench/triton.py: its C++ front-ends and dynamic batcher, the model in its Python backend holding one
onnxruntime session with the same options) serve the same model files, both pinned to the server
core. First the scores of both are checked bit for bit. Then, round by round, every cell (model,
client, c calls in flight, 1 image per request) runs against both back to back, the order reversed
every other round and cell. Clients, on the client core: tritonclient.grpc.aio (bench/triton_client.py),
h2load over gRPC and h2load --h1 over HTTP/1.1 with binary tensors (bench/h2load.py); OK answers are
counted from each server's own metrics, since h2load counts HTTP 200s. The bare synchronous grpc
echo (bench/echo_sync.py) joins the cifar-tiny h2load c=64 cell as the floor of any grpcio server, and
Triton with one instance the cifar-tiny h2load cells (Triton runs two by default: bench/vs_triton_report.py).
``--write`` puts the section "against Triton" into docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import h2load
from bench.launcher import MODELS, ROOT, ServerProcess, launch, launch_server, on_cores
from bench.processes import cores_error, parse_cores
from bench.report import command_line, publish
from bench.triton import CACHE as TRITON_CACHE
from bench.triton import TritonServer, prepare
from bench.triton_repo import build_repository
from bench.vs_triton_report import design_note, report
from bench.vs_triton_table import CLIENTS, ECHO, OURS, TRITON, TRITON_1, Cell, seconds_of, summarize, the_cells
from service.repository import read_spec

SECTION = "vs-triton"
LOGS = TRITON_CACHE.parent / "vs-triton-logs"
"""Where the log of a Triton that exited during a run is kept (the run's own directory is temporary)."""
REFERENCE_CELLS = {ECHO: (Cell("cifar-tiny", "h2load", 64),),
                   TRITON_1: (Cell("cifar-tiny", "h2load", 1), Cell("cifar-tiny", "h2load", 64))}
"""Where the reference servers join a cell: the bare synchronous echo (the issue's floor of any
grpcio server) and Triton with one instance (the one-instance stalls the section describes)."""
CLIENT_ATTEMPTS = 3
"""Runs of a cell tried before the benchmark gives up: h2load has aborted (SIGABRT) and Triton's Python
backend has crashed mid-run here, rarely."""
def cores(spec: str) -> frozenset[int]:
    try:
        return parse_cores(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.vs_triton", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["cifar-tiny", "fashion", "cifar-vgg", "resnet18"],
                   help="models of models/ or exporter architectures built for the run (default the four)")
    p.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 64], help="calls in flight (default 1 8 64)")
    p.add_argument("--clients", nargs="+", choices=list(CLIENTS), default=list(CLIENTS))
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; figures are their medians (default 3)")
    p.add_argument("--duration", type=float, default=2.0, help="measured seconds per run (default 2)")
    p.add_argument("--warmup", type=float, default=0.5, help="unrecorded seconds before each run (default 0.5)")
    p.add_argument("--server-cores", type=cores, default=frozenset({1}), help="cores of both servers (default 1)")
    p.add_argument("--client-cores", type=cores, default=frozenset({0}), help="cores of the clients (default 0)")
    p.add_argument("--triton-instances", type=int, default=2,
                   help="Triton instances per model, on the same core (default 2: one instance stalls, see the section)")
    p.add_argument("--no-reference", nargs="+", choices=[ECHO, TRITON_1], default=[],
                   help="leave out these reference servers")
    p.add_argument("--write", action="store_true", help="write the section of docs/BENCHMARKS.md")
    p.add_argument("--report-from", type=Path, metavar="RUN.json",
                   help=f"measure nothing: the section from a run's record (each run keeps {LOGS}/last-run.json)")
    args = p.parse_args(argv)
    for flag, ok in (("--rounds", args.rounds >= 1), ("--duration", args.duration > 0), ("--warmup", args.warmup > 0),
                     ("--concurrency", min(args.concurrency) >= 1),
                     ("--triton-instances", args.triton_instances >= 1)):
        if not ok:
            p.error(f"{flag}: expected a positive number, got {getattr(args, flag[2:])}")
    if error := cores_error(args.server_cores, args.client_cores):
        p.error(error)
    return args


def bench_repository(out: Path, names: list[str]) -> Path:
    """A model repository of the named models: models/'s own where it has them, the others built
    by ``python -m exporter build`` (e.g. resnet18 at 224x224)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (MODELS / name / "config.json").is_file():
            (out / name).symlink_to((MODELS / name).resolve())
        else:
            subprocess.run([sys.executable, "-m", "exporter", "build", name, "--out", str(out)], cwd=ROOT, check=True,
                           capture_output=True, timeout=600)
    return out


def infer_scores(target: str, model: str, x: np.ndarray, input_name: str, output_name: str) -> np.ndarray:
    """The scores of one KServe v2 ModelInfer of ``x`` (raw FP32 contents) at ``target``."""
    import grpc

    from service.generated.inference import grpc_service_pb2 as kpb
    from service.generated.inference import grpc_service_pb2_grpc as kgrpc

    request = kpb.ModelInferRequest(model_name=model, raw_input_contents=[x.astype("<f4").tobytes()])
    request.inputs.add(name=input_name, datatype="FP32", shape=x.shape)
    request.outputs.add(name=output_name)
    with grpc.insecure_channel(target) as channel:
        reply = kgrpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
    (output,) = [o for o in reply.outputs if o.name == output_name]
    return np.frombuffer(reply.raw_output_contents[list(reply.outputs).index(output)], "<f4").reshape(output.shape)


def check_identical(models: list[str], repo: Path, targets: list[str]) -> dict[str, str]:
    """Per model, the same 4 random images through each target's KServe gRPC: "bit-identical" or what differs.
    (tritonclient is not used here: its generated KServe messages clash with this project's in one process.)"""
    verdicts = {}
    for model in models:
        spec = read_spec(repo / model)
        x = h2load.images(spec.example_shape(), 4, seed=7)
        first, *others = [infer_scores(t, model, x, spec.input_name, spec.output_name) for t in targets]
        if any(other.shape != first.shape for other in others):
            verdicts[model] = f"DIFFERENT shapes {[first.shape, *(o.shape for o in others)]}"
        elif all(first.tobytes() == other.tobytes() for other in others):
            verdicts[model] = "bit-identical"
        else:
            worst = max(float(np.max(np.abs(first - other))) for other in others)
            verdicts[model] = f"DIFFERENT (max |difference| {worst:.3g})"
    return verdicts


class Servers:
    """The running servers of the benchmark by kind (OURS, TRITON and the references) and their
    OK / failed request counters."""

    def __init__(self, ours: ServerProcess, triton: TritonServer, references: dict, logs: Path):
        self.ours, self.triton, self.references, self.logs = ours, triton, references, logs
        self.restarts: list[str] = []
        self.started: list[TritonServer] = []
        self.client_failures: list[str] = []

    def close(self) -> None:
        """Stop the servers restarted during the run (the first ones are the caller's to stop)."""
        for process in self.started:
            process.stop()

    def alive(self, server: str) -> None:
        """Restart a Triton that exited (its log kept in ``logs``, the event in ``restarts``); fail
        if this server did."""
        process = self.process(server)
        if process.process.poll() is None:
            return
        if not isinstance(process, TritonServer):
            raise RuntimeError(f"{server} exited with {process.process.returncode}:\n{process.output()[-3000:]}")
        kept = self.logs / f"{server}-exit-{len(self.restarts) + 1}.log"
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(process.log_path, kept)
        self.restarts.append(f"{server} exited with {process.process.returncode} (log: {kept})")
        print(f"{self.restarts[-1]}; restarting it", flush=True)
        process.stop()
        restarted = process.restart()
        self.started.append(restarted)
        if server == TRITON:
            self.triton = restarted
        else:
            self.references[server] = restarted

    def has(self, server: str) -> bool:
        return server in (OURS, TRITON) or server in self.references

    def process(self, server: str):
        return {OURS: self.ours, TRITON: self.triton}.get(server) or self.references[server]

    def grpc_target(self, server: str) -> str:
        return self.process(server).target

    def http_target(self, server: str) -> str:
        process = self.process(server)
        return f"127.0.0.1:{process.http_port}" if server == OURS else process.http_target

    def counts(self, server: str, model: str) -> tuple[float, float] | None:
        """(OK, failed) requests of ``model`` so far by the server's metrics; None for the echo."""
        process = self.process(server)
        if server == OURS:
            ok = process.metric("convnet_requests_total", model=model, code="OK")
            return ok, process.metric("convnet_requests_total", model=model) - ok
        if isinstance(process, TritonServer):
            return process.ok_requests(model), process.failed_requests(model)
        return None


def run_client(args, cell: Cell, target: str, spec) -> dict:
    """One run of the cell's client against ``target``: images/s, latency_ms, done, client_errors."""
    duration = seconds_of(args, cell.model)
    if cell.client == "tritonclient":
        command = [sys.executable, "-m", "bench.triton_client", "--target", target, "--model", cell.model,
                   "--shape", *map(str, spec.example_shape()), "--concurrency", str(cell.concurrency),
                   "--duration", str(duration), "--warmup", str(args.warmup)]
        done = subprocess.run(on_cores(command, args.client_cores), cwd=ROOT, capture_output=True, text=True,
                              timeout=duration + 120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        r = json.loads(done.stdout)
        return {"images_per_s": r["images_per_s"], "latency_ms": r["latency_ms"], "done": r["requests"],
                "client_errors": r["error_count"]}
    x = h2load.images(spec.example_shape(), 1)
    make = h2load.http_request if cell.client == "http" else h2load.grpc_request
    r = h2load.run(make(cell.model, x, spec.input_name, spec.output_name), target, cell.concurrency, duration,
                   args.warmup, args.client_cores)
    return {"images_per_s": r.images_per_s, "latency_ms": r.latency_ms, "done": r.done,
            "client_errors": r.failed + r.errored}


def measure_run(args, servers: Servers, cell: Cell, server: str, spec) -> dict:
    """One run with its errors: the client's own failures, answers the server did not count as OK
    (a gRPC error reaches h2load as HTTP 200), and the server's failures beyond the at most c calls
    h2load abandons in flight when it stops (a server may count those as failed)."""
    for attempt in range(1, CLIENT_ATTEMPTS + 1):
        servers.alive(server)
        before = servers.counts(server, cell.model)
        target = servers.http_target(server) if cell.client == "http" else servers.grpc_target(server)
        try:
            r = run_client(args, cell, target, spec)
            after = servers.counts(server, cell.model)
            break
        except (RuntimeError, OSError) as exc:  # the client failed, or the server went away under it
            if attempt == CLIENT_ATTEMPTS:
                raise
            servers.client_failures.append(f"{cell} against {server}: {str(exc).splitlines()[0][:160]}")
            print(f"run failed, once more: {exc}", flush=True)
    errors = r["client_errors"]
    if before is not None and after is not None:
        ok, failed = after[0] - before[0], after[1] - before[1]
        abandoned = 0 if cell.client == "tritonclient" else cell.concurrency
        errors += max(0, r["done"] - r["client_errors"] - ok) + max(0, failed - abandoned)
    r["errors"] = int(errors)
    return r


def references_of(cell: Cell) -> list[str]:
    return [server for server, cells in REFERENCE_CELLS.items() if cell in cells]


def measure(args, cells: list[Cell], servers: Servers, specs: dict) -> dict[tuple[Cell, str], list[dict]]:
    runs: dict[tuple[Cell, str], list[dict]] = {}
    for round_ in range(args.rounds):
        for i, cell in enumerate(cells):
            kinds = [OURS, TRITON] + [s for s in references_of(cell) if servers.has(s)]
            for server in kinds if (round_ + i) % 2 == 0 else kinds[::-1]:
                r = measure_run(args, servers, cell, server, specs[cell.model])
                runs.setdefault((cell, server), []).append(r)
                print(f"round {round_ + 1}/{args.rounds} {cell} {server:>8}: {r['images_per_s']:,.0f} img/s, "
                      f"p50 {r['latency_ms'].get('p50', float('nan')):.2f} ms, "
                      f"p99 {r['latency_ms'].get('p99', float('nan')):.2f} ms, errors {r['errors']}", flush=True)
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_from:
        return publish_record(json.loads(args.report_from.read_text()), args.write)
    cells, skipped = the_cells(args)
    started, load_before, design = time.time(), os.getloadavg(), design_note()
    install = prepare()
    with tempfile.TemporaryDirectory(prefix="bench-vs-triton-") as tmp, contextlib.ExitStack() as running:
        work = Path(tmp)
        repo = bench_repository(work / "models", args.models)
        specs = {m: read_spec(repo / m) for m in args.models}
        triton_repo = build_repository(repo, work / "triton-models", args.models, intra_op_threads=1,
                                       instances=args.triton_instances)
        ours = launch_server(work, "--intra-op-threads", "1", "--instances", "1", "--log-level", "warning",
                             models=repo, cores=args.server_cores, name="ours", timeout=180)
        running.callback(ours.stop)
        triton = TritonServer.start(install, triton_repo, work, args.server_cores)
        running.callback(triton.stop)
        references = {}
        wanted = {server for cell in cells for server in references_of(cell)} - set(args.no_reference)
        if ECHO in wanted:
            references[ECHO] = launch([sys.executable, "-m", "bench.echo_sync", "--models", str(repo), "--port", "0"],
                                      work, "echo-sync", cores=args.server_cores)
            running.callback(references[ECHO].stop)
        if TRITON_1 in wanted and args.triton_instances != 1:
            one = build_repository(repo, work / "triton-one-instance", ["cifar-tiny"], intra_op_threads=1, instances=1)
            references[TRITON_1] = TritonServer.start(install, one, work, args.server_cores, name="triton-1")
            running.callback(references[TRITON_1].stop)
        identical = check_identical(args.models, repo, [ours.target, triton.target])
        print("scores:", identical, flush=True)
        servers = Servers(ours, triton, references, LOGS)
        running.callback(servers.close)
        runs = measure(args, cells, servers, specs)
    record = {"argv": sys.argv[1:] if argv is None else argv, "onnxruntime": install.onnxruntime,
              "identical": identical, "skipped": [list(vars(c).values()) for c in skipped],
              "incidents": servers.restarts + servers.client_failures, "load": [load_before, os.getloadavg()],
              "seconds": time.time() - started, "design": design,
              "runs": [{"cell": list(vars(cell).values()), "server": server, "runs": results}
                       for (cell, server), results in runs.items()]}
    LOGS.mkdir(parents=True, exist_ok=True)
    (LOGS / "last-run.json").write_text(json.dumps(record) + "\n")
    print(f"runs kept in {LOGS / 'last-run.json'} (python -m bench.vs_triton --report-from it)", flush=True)
    return publish_record(record, args.write)


def publish_record(record: dict, write: bool) -> int:
    """The section from a run's record (its arguments, checks, incidents and every run), printed or written."""
    args = parse_args([a for a in record["argv"] if a != "--write"])
    runs = {(Cell(*item["cell"]), item["server"]): item["runs"] for item in record["runs"]}
    text = report(args, record["onnxruntime"], summarize(runs), record["identical"],
                  [Cell(*c) for c in record["skipped"]], record["incidents"],
                  command_line("-m bench.vs_triton", record["argv"]), record["load"], record["seconds"],
                  record["design"])
    publish(SECTION, text, write)
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
