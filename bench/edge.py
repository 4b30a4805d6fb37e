"""Issue 24's edge figures against live servers (docs/RELIABILITY.md "The edge"), bounded in time:

- flood: with the server's open-files limit at 1,024 (soft and hard, set by prlimit for that process
  only), 1,100 idle and 100 slowloris connections (a header byte a second) to the HTTP port; meanwhile
  a gRPC ModelInfer and an HTTP infer, each on a connection made before the flood and on a new one,
  are timed; then when the slow connections were closed, and how much the log grew;
- json: a gRPC caller's worst ModelInfer latency in windows without and with 37 MB JSON infer bodies
  arriving over HTTP, interleaved for ``--rounds`` rounds;
- bomb: the server's peak memory growth for a gzip body inflating to 200 MB (refused at the limit).

    python -m bench.edge [--root DIR] [--only flood,json,bomb] [--rounds 3]

``--root`` serves from another checkout (e.g. an export of the base revision, with this interpreter)
so that the same figures can be taken of the code before the change. Loopback only.
"""
from __future__ import annotations

import argparse
import gzip
import http.client
import json
import resource
import selectors
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.launcher import MODELS, ROOT, ServerProcess, launch, serve_command

MODEL = "cifar-tiny"
SHAPE = (3, 32, 32)
FLOOD_IDLE, FLOOD_SLOW = 1100, 100
CALL_TIMEOUT_S = 5.0


def kserve_request(n: int = 1):
    from tritonclient.grpc import service_pb2

    x = np.random.default_rng(n).standard_normal((n, *SHAPE)).astype(np.float32)
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    request.raw_input_contents.append(x.tobytes())
    return request


def http_infer_body(n: int = 1) -> bytes:
    x = np.random.default_rng(n).standard_normal((n, *SHAPE)).astype(np.float32)
    return json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape),
                                   "data": x.ravel().tolist()}]}).encode()


def timed(call) -> float | str:
    """Seconds ``call`` took, or what went wrong."""
    start = time.monotonic()
    try:
        call()
    except Exception as exc:  # a figure: the caller was not served
        return f"failed after {time.monotonic() - start:.1f} s ({type(exc).__name__})"
    return round(time.monotonic() - start, 3)


def grpc_infer(channel) -> None:
    from tritonclient.grpc import service_pb2_grpc

    service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(kserve_request(), timeout=CALL_TIMEOUT_S)


def http_infer(conn: http.client.HTTPConnection) -> None:
    conn.request("POST", f"/v2/models/{MODEL}/infer", body=http_infer_body())
    reply = conn.getresponse()
    reply.read()
    if reply.status != 200:
        raise RuntimeError(f"HTTP {reply.status}")


def start(root: Path, workdir: Path, name: str, *flags: str, open_files: int | None = None) -> ServerProcess:
    command = serve_command(MODELS, *flags)
    if open_files is not None:
        command = ["prlimit", f"--nofile={open_files}:{open_files}", "--", *command]
    return launch(command, workdir, name, cwd=root)


def flood(root: Path, workdir: Path, idle: int = FLOOD_IDLE, slow: int = FLOOD_SLOW, *flags: str) -> dict:
    """The flood's figures: seconds per call (or why it failed), connections closed, the log's growth."""
    import grpc

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this client's own limit
    server = start(root, workdir, "flood", *flags, open_files=1024)
    sockets: list[socket.socket] = []
    try:
        kept_http = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=CALL_TIMEOUT_S)
        http_infer(kept_http)
        kept_grpc = grpc.insecure_channel(server.target)
        grpc_infer(kept_grpc)
        log_before = server.log_path.stat().st_size
        selector = selectors.DefaultSelector()
        opened, refused = {}, 0
        for i in range(idle + slow):
            try:
                s = socket.create_connection(("127.0.0.1", server.http_port), timeout=CALL_TIMEOUT_S)
            except OSError:
                refused += 1
                continue
            s.setblocking(False)
            sockets.append(s)
            opened[s] = time.monotonic()
            kind = "slow" if i >= idle else "idle"
            if kind == "slow":
                try:
                    s.send(f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\n".encode())
                except OSError:
                    pass
            selector.register(s, selectors.EVENT_READ, kind)
        figures = {"connections opened": len(sockets), "connections refused at connect": refused,
                   "kept HTTP connection, infer (s)": timed(lambda: http_infer(kept_http)),
                   "new HTTP connection, infer (s)": timed(lambda: http_infer(
                       http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=CALL_TIMEOUT_S))),
                   "kept gRPC channel, ModelInfer (s)": timed(lambda: grpc_infer(kept_grpc)),
                   "new gRPC channel, ModelInfer (s)": timed(lambda: grpc_infer(grpc.insecure_channel(server.target)))}
        closed = {"idle": [], "slow": []}
        deadline = time.monotonic() + 20
        next_byte = time.monotonic() + 1
        while time.monotonic() < deadline and any(selector.get_map()):
            for key, _ in selector.select(timeout=0.2):
                try:
                    data = key.fileobj.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    closed[key.data].append(time.monotonic() - opened[key.fileobj])
                    selector.unregister(key.fileobj)
            if time.monotonic() >= next_byte:  # the slowloris: one more header byte a second
                next_byte += 1
                for key in list(selector.get_map().values()):
                    if key.data == "slow":
                        try:
                            key.fileobj.send(b"X")
                        except OSError:
                            pass
        log_lines = server.log_path.read_bytes()[log_before:]
        figures.update({
            f"slow connections closed (of {slow})": len(closed["slow"]),
            "slowest close of a slow connection (s after connect)": round(max(closed["slow"], default=0), 1),
            f"idle connections closed by the server (of {idle})": len(closed["idle"]),
            "log lines during the flood": log_lines.count(b"\n"),
            "log bytes during the flood": len(log_lines),
        })
        kept_grpc.close()
        kept_http.close()
        return figures
    finally:
        for s in sockets:
            s.close()
        server.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def json_stall(root: Path, workdir: Path, rounds: int, window_s: float = 3.0) -> dict:
    """Worst gRPC latency per window, quiet and with 37 MB JSON bodies, interleaved."""
    server = start(root, workdir, "json")
    values = np.random.default_rng(0).standard_normal(1_850_000).tolist()
    big = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [96, *SHAPE], "data": values}]}).encode()
    latencies: list[tuple[float, float]] = []
    stop = threading.Event()

    def caller():
        import grpc

        with grpc.insecure_channel(server.target) as channel:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    grpc_infer(channel)
                except grpc.RpcError:  # not served within CALL_TIMEOUT_S: counted at that latency
                    pass
                latencies.append((started, time.monotonic() - started))

    thread = threading.Thread(target=caller, daemon=True)
    thread.start()
    windows, statuses = [], []
    try:
        for _ in range(rounds):
            for kind in ("quiet", "37 MB JSON bodies"):
                begin = time.monotonic()
                while time.monotonic() - begin < window_s:
                    if kind == "quiet":
                        time.sleep(0.05)
                        continue
                    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
                    conn.request("POST", f"/v2/models/{MODEL}/infer", body=big)
                    reply = conn.getresponse()
                    statuses.append((reply.status, json.loads(reply.read()).get("error", "")[:80]))
                    conn.close()
                windows.append((kind, begin, time.monotonic()))
    finally:
        stop.set()
        thread.join(30)
        server.stop()
    table = []
    for kind, begin, end in windows:  # every call that overlaps the window, the one it straddles included
        window = [lat for t, lat in latencies if t < end and t + lat >= begin]
        table.append((kind, len(window), round(max(window) * 1e3, 1), round(float(np.median(window)) * 1e3, 1)))
    return {"body bytes": len(big), "replies": sorted(set(statuses)),
            "windows (kind, gRPC calls, worst ms, median ms)": table}


def bomb(root: Path, workdir: Path) -> dict:
    server = start(root, workdir, "bomb")
    try:
        body = gzip.compress(bytes(200 * 1000 * 1000), compresslevel=9)

        def status_kib(field: str) -> int:
            line = next(x for x in Path(f"/proc/{server.pid}/status").read_text().splitlines() if x.startswith(field))
            return int(line.split()[1])

        Path(f"/proc/{server.pid}/clear_refs").write_text("5")
        before = status_kib("VmRSS")
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
        conn.request("POST", f"/v2/models/{MODEL}/infer", body=body, headers={"Content-Encoding": "gzip"})
        reply = conn.getresponse()
        text = reply.read()[:120].decode(errors="replace")
        return {"compressed bytes": len(body), "reply": (reply.status, text),
                "RSS before (MiB)": round(before / 1024), "peak growth (MiB)": round((status_kib("VmHWM") - before) / 1024)}
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.edge", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout to serve from (default: this one)")
    parser.add_argument("--only", default="flood,json,bomb", help="sections to run (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the json section")
    args = parser.parse_args(argv)
    sections = {"flood": lambda w: flood(args.root, w), "json": lambda w: json_stall(args.root, w, args.rounds),
                "bomb": lambda w: bomb(args.root, w)}
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp:
        for name in args.only.split(","):
            print(f"== {name} ({args.root})", flush=True)
            for key, value in sections[name](Path(tmp)).items():
                if isinstance(value, list):
                    print(f"{key}:")
                    for row in value:
                        print(f"  {row}")
                else:
                    print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
