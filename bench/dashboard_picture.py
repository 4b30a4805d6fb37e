"""Draw the Grafana dashboard's panels from a real run into docs/dashboard.png.

Starts a server on the model repository and a real Prometheus configured by deploy/prometheus.yml
(scraping every second), sends a load in phases (one client, then more clients, bigger requests,
some invalid ones), then evaluates every query of deploy/grafana/dashboards/convnet.json through
Prometheus' query_range API and draws each panel with matplotlib, so the picture shows what the
dashboard shows for such a run.

    python -m bench.dashboard_picture [--models models] [--model cifar-vgg] [--phase-seconds 12]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from matplotlib.figure import Figure

from bench import ROOT, loopback
from bench.launcher import launch_server, wait_until
from bench.report import cpu_name
from service import client
from service.generated.convnet.v1 import convnet_pb2 as pb


RATE_INTERVAL = "5s"  # Grafana's $__rate_interval for a 1s scrape is 4s; 5s is a little smoother


@dataclass
class Phase:
    name: str
    clients: int
    images: int          # per request
    bad_every: int = 0   # every n-th request of a client is invalid (0: none)


PHASES = [Phase("1 client, 1 image", 1, 1), Phase("8 clients, 1 image", 8, 1),
          Phase("32 clients, 2 images", 32, 2), Phase("4 clients, 1 in 10 invalid", 4, 1, bad_every=10)]


def run_phase(stub, model: str, input_shape: tuple[int, ...], phase: Phase, seconds: float) -> int:
    """Closed loop: `phase.clients` threads send requests back to back for `seconds`."""
    stop_at = time.monotonic() + seconds
    sent = [0] * phase.clients

    def loop(c: int) -> None:
        rng = np.random.default_rng(c)
        bad = pb.ClassifyRequest(model=model, tensor=client.tensor_message(np.zeros((1, 3, 7, 7), np.float32)))
        while time.monotonic() < stop_at:
            sent[c] += 1
            if phase.bad_every and sent[c] % phase.bad_every == 0:
                req = bad
            else:
                x = rng.standard_normal((phase.images, *input_shape)).astype(np.float32)
                req = pb.ClassifyRequest(model=model, tensor=client.tensor_message(x))
            try:
                stub.Classify(req, timeout=30)
            except grpc.RpcError:
                pass

    threads = [threading.Thread(target=loop, args=(c,)) for c in range(phase.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(sent)


def legend(template: str, labels: dict) -> str:
    out = template
    for key, value in labels.items():
        out = out.replace("{{" + key + "}}", value)
    return out or ",".join(f"{k}={v}" for k, v in labels.items())


def draw_timeseries(ax, panel: dict, results: list[tuple[dict, list]], t0: float) -> None:
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
    scale, ylabel = {"s": (1e3, "ms"), "percentunit": (100, "%")}.get(unit, (1, ""))
    for target, series in results:
        for s in series:
            t = np.array([float(v[0]) for v in s["values"]]) - t0
            y = np.array([float(v[1]) for v in s["values"]]) * scale
            ax.plot(t, y, lw=1.6, label=legend(target.get("legendFormat", ""), s["metric"]))
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    if ax.lines:
        ax.legend(fontsize=7, loc="upper left")


def draw_heatmap(ax, results: list[tuple[dict, list]], t0: float) -> None:
    """Cumulative `le` buckets -> batches per bucket over time, as Grafana's heatmap shows them."""
    [(_, series)] = results
    series = sorted(series, key=lambda s: float(s["metric"]["le"]))
    times = np.array([float(v[0]) for v in series[0]["values"]]) - t0
    cumulative = np.array([[float(v[1]) for v in s["values"]] for s in series])
    counts = np.diff(np.vstack([np.zeros_like(cumulative[:1]), cumulative]), axis=0)
    bounds = [s["metric"]["le"].removesuffix(".0") for s in series]
    ax.pcolormesh(times, np.arange(len(bounds)), np.log1p(np.clip(counts, 0, None)), cmap="Oranges", shading="nearest")
    ax.set_yticks(np.arange(len(bounds)), [f"<={b}" for b in bounds], fontsize=7)
    ax.set_ylabel("batch size (colour: log(1 + batches))", fontsize=8)


def draw_table(ax, url: str, panel: dict, values: dict, at: float) -> None:
    rows = {}
    for target in panel["targets"]:
        expr = loopback.VARIABLE.sub(lambda m: values[m.group(1) or m.group(2)], target["expr"])
        for s in loopback.prometheus_api(url, "query", query=expr, time=f"{at:.3f}")["result"]:
            key = (s["metric"]["model"], s["metric"]["version"])
            rows.setdefault(key, {}).update(s["metric"], **({"ready": s["value"][1]} if target["refId"] == "A" else {}))
    columns = ["model", "version", "ready", "providers", "max_batch_size"]
    cells = [[row.get(c, "") for c in columns] for _, row in sorted(rows.items())]
    ax.axis("off")
    if cells:
        table = ax.table(cellText=cells, colLabels=columns, loc="center", cellLoc="center",
                         colWidths=[0.17, 0.11, 0.09, 0.43, 0.2])
        table.auto_set_font_size(False)
        table.set_fontsize(10)
        table.scale(1, 2.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dashboard_picture.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "models", help="model repository (built if missing)")
    parser.add_argument("--model", default="cifar-vgg", help="model to load")
    parser.add_argument("--phase-seconds", type=float, default=12.0, help="length of each load phase")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    args = parser.parse_args(argv)
    if not (args.models / args.model).exists():
        subprocess.run([sys.executable, "-m", "training", "defaults", "--out", str(args.models)], cwd=ROOT, check=True)

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        server = launch_server(workdir, models=args.models, timeout=120)
        try:
            target = f"127.0.0.1:{server.metrics_port}"
            with loopback.prometheus([target], workdir / "prometheus", scrape_interval="1s") as url:
                def idle(scrapes: int) -> None:
                    """Send nothing while Prometheus scrapes the server ``scrapes`` more times (a gap in the picture)."""
                    for _ in range(scrapes):
                        last = loopback.scrapes_of(url, target)
                        wait_until(lambda: loopback.scrapes_of(url, target) not in ("", last), "the next scrape")

                idle(1)
                stub = client.connect(server.target)
                info = stub.GetModelInfo(pb.GetModelInfoRequest(model=args.model), timeout=30)
                shape = tuple(info.input.shape)
                t0 = time.time()
                marks = []
                idle(3)
                for phase in PHASES:
                    start = time.time() - t0
                    sent = run_phase(stub, args.model, shape, phase, args.phase_seconds)
                    marks.append((start, time.time() - t0, phase.name))
                    print(f"{phase.name}: {sent} requests in {args.phase_seconds:.0f} s", flush=True)
                    idle(2)
                images = server.metric("convnet_images_total", model=args.model)
                wait_until(lambda: [float(s["value"][1]) for s in loopback.prometheus_api(
                    url, "query", query=f'sum(convnet_images_total{{model="{args.model}"}})')["result"]] == [images],
                           "the last scrape of the load")
                idle(3)
                end = time.time()
                draw(args, url, t0, end, marks)
        finally:
            server.stop()
    print(f"wrote {args.out}")
    return 0


def draw(args, url: str, t0: float, end: float, marks: list[tuple[float, float, str]]) -> None:
    values = {"__rate_interval": RATE_INTERVAL, "model": args.model, "api": ".*"}
    dashboard = json.loads(loopback.DASHBOARD.read_text())
    panels = dashboard["panels"]
    rows = (len(panels) + 1) // 2
    fig = Figure(figsize=(14, 3.1 * rows), constrained_layout=True)  # no pyplot: no GUI backend to choose
    axes = fig.subplots(rows, 2)
    for ax, panel in zip(axes.flat, panels):
        ax.set_title(panel["title"], fontsize=10, loc="left")
        if panel["type"] == "table":
            draw_table(ax, url, panel, values, end)
            continue
        results = []
        for target in panel["targets"]:
            expr = loopback.VARIABLE.sub(lambda m: values[m.group(1) or m.group(2)], target["expr"])
            data = loopback.prometheus_api(url, "query_range", query=expr, start=f"{t0:.3f}", end=f"{end:.3f}", step="1")
            results.append((target, data["result"]))
        if panel["type"] == "heatmap":
            draw_heatmap(ax, results, t0)
        else:
            draw_timeseries(ax, panel, results, t0)
        for i, (a, b, name) in enumerate(marks):
            ax.axvspan(a, b, color="0.5", alpha=0.06 if i % 2 else 0.13, lw=0)
        ax.set_xlim(0, end - t0)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    top = axes.flat[0]
    for a, b, name in marks:
        top.annotate(name, xy=((a + b) / 2, 1.0), xycoords=("data", "axes fraction"), ha="center", va="bottom",
                     fontsize=7, color="0.3", xytext=(0, 14), textcoords="offset points")
    for ax in axes[-1]:
        ax.set_xlabel("seconds into the run")
    fig.suptitle(f"ConvNet serving dashboard, model {args.model}: {' | '.join(m[2] for m in marks)}\n"
                 f"drawn from Prometheus query_range (step 1 s, rate interval {RATE_INTERVAL}) by "
                 f"bench/dashboard_picture.py on {cpu_name()} ({os.cpu_count()} cores), client and server on the same machine",
                 fontsize=10)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)


if __name__ == "__main__":
    raise SystemExit(main())
