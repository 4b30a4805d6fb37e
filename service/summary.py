"""What the server tells the outside once it serves: the one-screen start-up summary (where it
listens, the models with their versions, readiness and batching, the providers, access control and
how to stop it) and the ready file a supervisor waits for."""
from __future__ import annotations

import json
import os
from pathlib import Path

from . import __version__
from .config import ServerConfig
from .connections import ConnectionCaps
from .models import ModelRegistry


def address(host: str, port: int) -> str:
    """``host:port`` as gRPC binds it (an IPv6 host in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def startup_summary(c: ServerConfig, registry: ModelRegistry, port: int, metrics_port: int, http_port: int,
                    caps: ConnectionCaps | None = None, open_files: int = 0) -> str:
    """The summary of a server of configuration ``c`` serving ``registry`` on these ports, with its
    connection caps (derived from the open-files limit)."""
    providers = registry.providers
    lines = [
        f"convnet-serve {__version__}: gRPC on {address(c.host, port)} "
        f"(convnet.v1.Classifier, KServe v2, health, reflection); metrics on "
        f"http://{address(c.host, metrics_port)}/metrics; HTTP/REST (KServe v2) and the page on "
        f"{'https' if c.tls_cert else 'http'}://{address(c.host, http_port)}/",
        f"models from {c.models.resolve()}; providers {', '.join(providers.names)} (asked: {c.providers}); "
        f"onnxruntime threads intra-op {c.intra_op_threads or 'default'}, inter-op {c.inter_op_threads or 'default'}, "
        f"optimization {c.graph_optimization_level}",
    ]
    if providers.warning:
        lines.append(f"WARNING: {providers.warning}")
    rows = [("model", "versions", "default", "ready", "batching (max, delay, preferred, queue)", "instances")]
    for model in registry.models.values():
        default = model.default
        any_version = default or next(iter(model.versions.values()), None)
        b = any_version.batching if any_version else None
        rows.append((
            model.name,
            ",".join(str(v) for v in sorted(model.versions)) or "-",
            str(default.version) if default else "-",
            "yes" if model.ready else "NO: " + model.not_ready_reason[:100],
            f"{b.max_batch_size}, {b.max_queue_delay_ms:g} ms, {list(b.preferred_batch_sizes) or '-'}, "
            f"{b.max_queue_size}" if b else "-",
            str(b.instances) if b else "-",
        ))
    if len(rows) == 1:
        rows.append(("(no models)", "-", "-", "-", "-", "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    access = ["TLS" + (" (mutual: client certificates required)" if c.tls_client_ca else "") if c.tls_cert
              else "plaintext (no TLS)", "bearer token required (health exempt)" if c.auth_token or c.auth_token_file
              else "no authentication"]
    lines.append("access: " + ", ".join(access))
    if caps is not None:
        lines.append(f"connections: at most {caps.http} HTTP, {caps.grpc} gRPC, {caps.metrics} metrics "
                     f"(open-files limit {open_files}); request heads within {c.http_header_timeout_s:g} s, "
                     f"idle HTTP kept {c.http_keepalive_timeout_s:g} s, idle gRPC {c.grpc_max_connection_idle_s:g} s")
    lines.append("model control: " + ("explicit (callers may load and unload models)" if c.model_control == "explicit"
                                      else "none (start with --model-control explicit to allow load/unload)"))
    lines.append(f"Ctrl-C or SIGTERM stops (drain {min(c.drain_s, c.shutdown_grace_s):g} s, grace "
                 f"{c.shutdown_grace_s:g} s); SIGHUP reloads the repository"
                 + (f" (also every {c.reload_interval_s:g} s)" if c.reload_interval_s else ""))
    return "\n".join(lines)


def write_ready_file(path: Path, **ports: int) -> None:
    """Tell a supervisor (the tests) the pid and the ports actually bound, once the server serves.

    Written to a temporary name and renamed, so a reader never sees half a file.
    """
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), **ports}))
    os.replace(tmp, path)
