"""``python -m service``: ``serve`` runs the server, ``classify`` asks it about images.

The load generator is tooling of a checkout, above the server: ``python -m bench.load``.

Subcommands are ``Command`` entries in ``COMMANDS``; adding one is an entry in that list. Errors are
one line on stderr and a non-zero exit status.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PROG = "python -m service"


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _serve_args(p: argparse.ArgumentParser) -> None:
    import dataclasses

    from .config import ServerConfig
    from .settings import LOG_LEVELS, OPTIMIZATION_LEVELS, PROVIDERS, BatchSettings

    server = {f.name: f.default for f in dataclasses.fields(ServerConfig)}
    model = dataclasses.asdict(BatchSettings())

    def default(name: str, note: str = "") -> str:
        return f"(default {server[name]}{'; ' + note if note else ''})"

    def batching(name: str) -> str:
        value = ",".join(map(str, model[name])) or "none" if isinstance(model[name], tuple) else model[name]
        return f"(default: the model's config.json value; the exporter writes {value})"

    p.add_argument("--config", type=Path, help="TOML or JSON configuration file (else $CONVNET_CONFIG)")
    p.add_argument("--models", type=Path, help=f"model repository directory {default('models')}")
    p.add_argument("--host", help=f"address to listen on {default('host')}")
    p.add_argument("--port", type=int, help=f"gRPC port {default('port', '0 = any free port')}")
    p.add_argument("--metrics-port", type=int, help=f"HTTP port of /metrics {default('metrics_port', '0 = any free port')}")
    p.add_argument("--http-port", type=int,
                   help=f"HTTP port of the REST API and the page {default('http_port', '0 = any free port')}")
    p.add_argument("--http-read-timeout-s", type=float,
                   help=f"seconds a request body may take to arrive over HTTP {default('http_read_timeout_s')}")
    p.add_argument("--http-header-timeout-s", type=float,
                   help=f"seconds a connection may take to send a request head {default('http_header_timeout_s')}")
    p.add_argument("--http-keepalive-timeout-s", type=float,
                   help=f"seconds an idle HTTP connection is kept after a reply {default('http_keepalive_timeout_s')}")
    for port in ("http", "grpc", "metrics"):
        p.add_argument(f"--{port}-max-connections", type=int,
                       help=f"open connections on the {port} port {default(f'{port}_max_connections', '0 = a share of the open-files limit')}")
    p.add_argument("--grpc-max-connection-idle-s", type=float,
                   help=f"seconds a gRPC connection without calls is kept {default('grpc_max_connection_idle_s')}")
    p.add_argument("--grpc-max-connection-age-s", type=float,
                   help=f"seconds before a gRPC connection is asked to reconnect {default('grpc_max_connection_age_s', '0 = never')}")
    p.add_argument("--grpc-threads", type=int,
                   help=f"gRPC handler threads: calls at once, open streams included {default('grpc_threads')}")
    p.add_argument("--providers", choices=PROVIDERS, help=f"onnxruntime execution providers {default('providers')}")
    p.add_argument("--intra-op-threads", type=int,
                   help=f"onnxruntime intra-op threads per instance {default('intra_op_threads', '0 = its default')}")
    p.add_argument("--inter-op-threads", type=int,
                   help=f"onnxruntime inter-op threads per instance {default('inter_op_threads', '0 = its default')}")
    p.add_argument("--graph-optimization-level", choices=OPTIMIZATION_LEVELS, help=default("graph_optimization_level"))
    p.add_argument("--instances", type=int,
                   help=f"sessions per model version running batches concurrently {batching('instances')}")
    p.add_argument("--max-batch-size", type=int, help=f"images per batch, for every model {batching('max_batch_size')}")
    p.add_argument("--max-queue-delay-ms", type=float,
                   help=f"how long a free instance waits for a fuller batch {batching('max_queue_delay_ms')}")
    p.add_argument("--preferred-batch-sizes",
                   help=f"comma-separated batch sizes to aim for, e.g. 8,16 {batching('preferred_batch_sizes')}")
    p.add_argument("--max-queue-size", type=int,
                   help=f"images waiting per model before RESOURCE_EXHAUSTED {batching('max_queue_size')}")
    p.add_argument("--max-message-bytes", type=int, help=f"largest gRPC message accepted or sent {default('max_message_bytes')}")
    p.add_argument("--shutdown-grace-s", type=float,
                   help=f"seconds from SIGTERM/Ctrl-C to exit, drain period included {default('shutdown_grace_s')}")
    p.add_argument("--drain-s", type=float,
                   help=f"seconds after SIGTERM that new requests are still served, health NOT_SERVING "
                        f"{default('drain_s', 'at most the grace')}")
    p.add_argument("--stream-max-images", type=int,
                   help=f"images one ClassifyStream may hold (waiting, computing, unsent); it stops reading beyond "
                        f"{default('stream_max_images')}")
    p.add_argument("--stream-max-bytes", type=int,
                   help=f"request and reply bytes one ClassifyStream may hold; it stops reading beyond "
                        f"{default('stream_max_bytes')}")
    p.add_argument("--allow-non-finite", dest="reject_non_finite", action="store_const", const=False,
                   help="accept NaN/Inf in tensors (rejected by default)")
    p.add_argument("--log-level", choices=LOG_LEVELS, help=default("log_level"))
    p.add_argument("--max-image-pixels", type=int,
                   help=f"largest encoded image (width x height) decoded {default('max_image_pixels')}")
    p.add_argument("--max-concurrent-rpcs", type=int,
                   help=f"calls handled at once; beyond it RESOURCE_EXHAUSTED at once {default('max_concurrent_rpcs', '0 = no limit')}")
    p.add_argument("--reload-interval-s", type=float,
                   help=f"rescan the model repository this often {default('reload_interval_s', '0 = only on SIGHUP')}")
    p.add_argument("--model-control", choices=["none", "explicit"],
                   help="explicit: callers may load and unload models (KServe repository extension) "
                        f"{default('model_control')}")
    p.add_argument("--workers", type=int,
                   help="server processes sharing the gRPC and HTTP ports (SO_REUSEPORT), each with its own sessions "
                        f"and batch queues, under one supervising parent that serves /metrics {default('workers', '1 = no parent')}")
    p.add_argument("--tls-cert", type=Path, help="PEM server certificate (with --tls-key: the port speaks TLS only)")
    p.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    p.add_argument("--tls-client-ca", type=Path, help="PEM CA: clients must present a certificate it signed (mutual TLS)")
    p.add_argument("--auth-token-file", type=Path,
                   help="file holding the bearer token every call but health must carry (or $CONVNET_AUTH_TOKEN)")
    p.add_argument("--ready-file", type=Path,
                   help="write {pid, port, metrics_port, http_port} as JSON here once serving (for supervisors and tests)")


def _serve(args: argparse.Namespace) -> int:
    from .signals import early_signals

    early_signals.install()  # before the heavy imports: SIGHUP's default action would kill the process
    from .config import ConfigError, load_config

    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config", "ready_file", "run")}
    try:
        config = load_config(args.config, flags)
    except ConfigError as exc:
        print(f"{PROG} serve: error: {exc}", file=sys.stderr)
        return 2
    if config.workers > 1:
        from .workers import run_pool

        return run_pool(config, args.ready_file)
    logging.basicConfig(level=config.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .idle import run
    from .server import serve

    return run(serve(config, args.ready_file))


def _classify_args(p: argparse.ArgumentParser) -> None:
    from .settings import DEFAULT_TOP_K

    p.add_argument("images", nargs="*", metavar="IMAGE", help="PNG or JPEG files (any size, gray or colour)")
    p.add_argument("--random", type=int, metavar="N", help="send N random tensors of the model's input shape instead")
    p.add_argument("--target", default="127.0.0.1:8001", help="server address HOST:PORT (default %(default)s)")
    p.add_argument("--model", help="model name (default: fashion if ready, else the first ready trained model the server lists)")
    p.add_argument("--version", type=int, default=0, help="model version (default: the server's default)")
    p.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help="labels to print per image (default %(default)s)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each answer (default %(default)g)")
    p.add_argument("--seed", type=int, default=0, help="seed of --random (default %(default)s)")
    p.add_argument("--json", action="store_true", help="one JSON object per image and line")


def _classify(args: argparse.Namespace) -> int:
    from .client import classify_command

    if bool(args.images) == (args.random is not None):
        print(f"{PROG} classify: error: give IMAGE files or --random N (one of them)", file=sys.stderr)
        return 2
    if args.top_k < 1:
        print(f"{PROG} classify: error: --top-k: expected >= 1, got {args.top_k}", file=sys.stderr)
        return 2
    return classify_command(args)


COMMANDS: list[Command] = [
    Command("serve", "run the gRPC server in the foreground (Ctrl-C stops it)", _serve_args, _serve),
    Command("classify", "classify images (or random tensors) with a running server", _classify_args, _classify),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    args = parser.parse_args(argv)
    return args.run(args)
