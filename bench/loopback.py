"""Run deploy/'s Prometheus and nginx configuration as local processes on loopback.

Without a Docker engine the deployment can still be exercised for real: the same files,
with the container addresses swapped for 127.0.0.1 ports and every path in a scratch folder.
The integration tests and bench/dashboard_picture.py use it; the dashboard's PromQL is read
from the Grafana JSON here too, so what is checked and drawn is what Grafana would run.
"""
from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
from datetime import datetime, timezone
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator

import yaml

from bench.launcher import wait_until

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus.yml"
NGINX_CONFIG = DEPLOY / "nginx" / "nginx.conf"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "convnet.json"
SERVICE_JOB = "convnet"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary(name: str) -> str:
    """Path of a required executable; a missing one is an error (scripts/install.sh installs it)."""
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(f"{name}: executable not found on PATH; "
                                f"scripts/install.sh installs the Debian package")
    return path


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ----------------------------------------------------------------------------- Prometheus
def prometheus_config(targets: list[str], scrape_interval: str, listen: str,
                      source: Path = PROMETHEUS_CONFIG) -> dict:
    """deploy/prometheus.yml with the service job scraping `targets` statically, the given
    scrape/evaluation interval, rule files made absolute and self-scraping at `listen`."""
    config = yaml.safe_load(source.read_text())
    config["global"]["scrape_interval"] = scrape_interval
    config["global"]["evaluation_interval"] = scrape_interval
    config["rule_files"] = [str((source.parent / f).resolve()) for f in config.get("rule_files", [])]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    if SERVICE_JOB not in jobs:
        raise ValueError(f"{source}: expected a scrape job named {SERVICE_JOB!r}, got {sorted(jobs)}")
    for name, job in jobs.items():
        for key in [k for k in job if k.endswith("_sd_configs") or k == "static_configs"]:
            del job[key]
        job["static_configs"] = [{"targets": targets if name == SERVICE_JOB else [listen]}]
    return config


@contextlib.contextmanager
def prometheus(targets: list[str], workdir: Path, scrape_interval: str = "1s") -> Iterator[str]:
    """A real Prometheus server scraping `targets`; yields its base URL."""
    port = free_port()
    listen = f"127.0.0.1:{port}"
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(targets, scrape_interval, listen)))
    log = workdir / "prometheus.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [binary("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address={listen}", "--log.level=warn"],
            stdout=out, stderr=subprocess.STDOUT)
    url = f"http://{listen}"
    try:
        wait_until(lambda: urllib.request.urlopen(f"{url}/-/ready", timeout=1).status == 200,
                   "prometheus", process=proc, log=log)
        yield url
    finally:
        stop(proc)


def prometheus_api(url: str, path: str, **params) -> dict:
    """GET /api/v1/<path> and return `data`, raising on an error answer."""
    query = urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(f"{url}/api/v1/{path}?{query}", timeout=10) as reply:
            body = json.load(reply)
    except urllib.error.HTTPError as err:  # 400/422/503 carry the error in the same JSON form
        body = json.load(err)
    if body.get("status") != "success":
        raise RuntimeError(f"prometheus {path}({params}): {body.get('errorType')}: {body.get('error')}")
    return body["data"]


def rfc3339(stamp: str) -> float:
    """Seconds since the epoch of a Prometheus timestamp such as 2026-01-02T03:04:05.123456789Z."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(whole).replace(tzinfo=timezone.utc).timestamp() + float("0." + (fraction or "0"))


def rules_evaluated_after(url: str, at: float) -> bool:
    """Whether every rule group of the Prometheus at ``url`` was evaluated after ``at`` (epoch seconds)."""
    groups = prometheus_api(url, "rules")["groups"]
    return bool(groups) and all(rfc3339(g["lastEvaluation"]) > at for g in groups)


def scrapes_of(url: str, target: str) -> str:
    """The time of the last scrape of ``target`` (HOST:PORT) by the Prometheus at ``url`` ("" before the first)."""
    active = prometheus_api(url, "targets", state="active")["activeTargets"]
    return next((t["lastScrape"] for t in active if target in t["scrapeUrl"] and t["health"] == "up"), "")


def targets_up(url: str) -> list[str]:
    """Scrape URLs of the active targets whose last scrape succeeded."""
    active = prometheus_api(url, "targets", state="active")["activeTargets"]
    return [t["scrapeUrl"] for t in active if t["health"] == "up"]


# ----------------------------------------------------------------------------- nginx
def nginx_config(upstreams: list[str], listen: str, workdir: Path, source: Path = NGINX_CONFIG,
                 http_upstreams: list[str] | None = None, http_listen: str | None = None) -> str:
    """deploy/nginx/nginx.conf balancing gRPC over `upstreams`, listening on `listen`, temp files in
    `workdir` (so it runs as any user). Its HTTP/REST part, when the file has one, balances over
    `http_upstreams` (default: `upstreams`, unused) listening on `http_listen` (default: a free port)."""
    text = source.read_text()
    server = re.compile(r"^(\s*)server convnet-replica:8001([^;]*);", re.M)
    listen_line = re.compile(r"^(\s*)listen 8001 http2;", re.M)
    if len(server.findall(text)) != 1 or len(listen_line.findall(text)) != 1:
        raise ValueError(f"{source}: expected one 'server convnet-replica:8001' line and one "
                         f"'listen 8001 http2;' line to replace")
    text = server.sub(lambda m: "\n".join(f"{m.group(1)}server {u}{m.group(2)};" for u in upstreams), text)
    text = listen_line.sub(lambda m: f"{m.group(1)}listen {listen} http2;", text)
    http_server = re.compile(r"^(\s*)server convnet-replica:8000([^;]*);", re.M)
    if http_server.search(text):
        http_listen = http_listen or f"127.0.0.1:{free_port()}"
        text = http_server.sub(lambda m: "\n".join(f"{m.group(1)}server {u}{m.group(2)};"
                                                   for u in (http_upstreams or upstreams)), text)
        text = re.sub(r"^(\s*)listen 8000;", lambda m: f"{m.group(1)}listen {http_listen};", text, flags=re.M)
    elif http_upstreams:
        raise ValueError(f"{source}: expected a 'server convnet-replica:8000' line (the HTTP upstream), found none")
    temp = "".join(f"    {kind}_temp_path {workdir / kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return text.replace("http {\n", "http {\n" + temp, 1)


@contextlib.contextmanager
def nginx(upstreams: list[str], workdir: Path) -> Iterator[str]:
    """A real nginx in front of `upstreams`; yields its HOST:PORT."""
    with nginx_with_http(upstreams, None, workdir) as (listen, _):
        yield listen


@contextlib.contextmanager
def nginx_with_http(upstreams: list[str], http_upstreams: list[str] | None,
                    workdir: Path) -> Iterator[tuple[str, str]]:
    """A real nginx in front of gRPC `upstreams` and HTTP `http_upstreams`; yields both HOST:PORTs."""
    listen, http_listen = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "nginx.conf"
    config.write_text(nginx_config(upstreams, listen, workdir, http_upstreams=http_upstreams,
                                   http_listen=http_listen))
    log = workdir / "nginx.log"
    command = [binary("nginx"), "-p", str(workdir), "-c", str(config),
               "-g", f"daemon off; pid {workdir / 'nginx.pid'};"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    host, port = listen.rsplit(":", 1)
    try:
        wait_until(lambda: socket.create_connection((host, int(port)), timeout=1).close() is None,
                   "nginx", process=proc, log=log)
        yield listen, http_listen
    finally:
        stop(proc)


# ----------------------------------------------------------------------------- dashboard
VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def dashboard_queries(values: dict[str, str], source: Path = DASHBOARD) -> list[dict]:
    """Every PromQL target of the Grafana dashboard with its variables replaced by `values`
    (e.g. {"__rate_interval": "30s", "model": "cifar-tiny", "api": ".*"}): dicts with the
    panel title, legend, ref id, whether it is an instant query, and the expression."""
    dashboard = json.loads(source.read_text())
    panels = list(dashboard["panels"])
    for panel in list(panels):
        panels.extend(panel.get("panels", []))  # panels folded into rows

    def substitute(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"dashboard variable ${name}: no value given (have {sorted(values)})")
        return values[name]

    queries = []
    for panel in panels:
        for target in panel.get("targets", []):
            if "expr" in target:
                queries.append({"panel": panel["title"], "legend": target.get("legendFormat", ""),
                                "ref": target["refId"], "instant": bool(target.get("instant")),
                                "expr": VARIABLE.sub(substitute, target["expr"])})
    return queries
