"""Run deploy/'s Prometheus and HAProxy configuration as local processes on loopback.

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
from dataclasses import dataclass
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
HAPROXY_CONFIG = DEPLOY / "haproxy" / "haproxy.cfg"
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


# ----------------------------------------------------------------------------- HAProxy
@dataclass(frozen=True)
class Replica:
    """One server behind the load balancer: its gRPC and HTTP addresses (HOST:PORT)."""

    grpc: str
    http: str


@dataclass(frozen=True)
class Balancer:
    """A running HAProxy: where it takes gRPC calls, HTTP requests and serves its statistics."""

    grpc: str
    http: str
    stats: str

    def servers(self) -> dict[tuple[str, str], str]:
        """(backend, server) -> status (UP, DOWN, MAINT, ...) from the statistics page's CSV."""
        with urllib.request.urlopen(f"http://{self.stats}/;csv", timeout=5) as reply:
            rows = reply.read().decode().lstrip("# ").splitlines()
        header = rows[0].split(",")
        found = {}
        for row in rows[1:]:
            cells = dict(zip(header, row.split(",")))
            if cells.get("svname") not in ("FRONTEND", "BACKEND", None):
                found[cells["pxname"], cells["svname"]] = cells["status"]
        return found


SERVERS = re.compile(r"^(\s*)(?:server-template replica \d+|server replica\d+) convnet-replica:(8001|8000)(.*)\n", re.M)
BIND = re.compile(r"^(\s*)bind :(8001|8000|8404)\b", re.M)
DNS_OPTIONS = re.compile(r"\s+(resolvers|resolve-prefer|init-addr)\s+\S+")


def haproxy_config(replicas: list[Replica], listen: dict[str, str], source: Path = HAPROXY_CONFIG) -> str:
    """deploy/haproxy/haproxy.cfg with each backend's servers found by DNS (a server template or
    numbered server lines for convnet-replica) replaced by one server per replica (checked on that
    replica's HTTP port) and the container ports bound to ``listen`` (keys "8001", "8000", "8404":
    HOST:PORT); DNS resolution is dropped, the addresses being given."""
    text = source.read_text()
    ports = {m.group(2) for m in SERVERS.finditer(text)}
    binds = {m.group(2) for m in BIND.finditer(text)}
    if ports != {"8001", "8000"} or binds != {"8001", "8000", "8404"}:
        raise ValueError(f"{source}: expected servers for convnet-replica:8001 and :8000 and binds on :8001, :8000, "
                         f":8404, found servers for {sorted(ports)}, binds {sorted(binds)}")
    done: set[str] = set()

    def servers(m: re.Match) -> str:
        port = m.group(2)
        if port in done:  # the backend's further slots: the first one's line stands for them
            return ""
        done.add(port)
        options = DNS_OPTIONS.sub("", m.group(3))
        lines = []
        for i, r in enumerate(replicas, 1):
            if port == "8001":  # checked on the replica's HTTP port
                lines.append(f"{m.group(1)}server replica{i} {r.grpc}"
                             + re.sub(r"\bport 8000\b", f"port {r.http.rsplit(':', 1)[1]}", options))
            else:
                lines.append(f"{m.group(1)}server replica{i} {r.http}{options}")
        return "".join(line + "\n" for line in lines)

    text = SERVERS.sub(servers, text)
    text = BIND.sub(lambda m: f"{m.group(1)}bind {listen[m.group(2)]}", text)
    return re.sub(r"\nresolvers engine\n(    .*\n)+", "\n", text)


@contextlib.contextmanager
def haproxy(replicas: list[Replica], workdir: Path) -> Iterator[Balancer]:
    """A real HAProxy with deploy/haproxy/haproxy.cfg in front of ``replicas``, every one of them
    up (checked ready) before it is yielded; its log is WORKDIR/haproxy.log."""
    ports = {key: f"127.0.0.1:{free_port()}" for key in ("8001", "8000", "8404")}
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "haproxy.cfg"
    config.write_text(haproxy_config(replicas, ports))
    log = workdir / "haproxy.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([binary("haproxy"), "-db", "-f", str(config)], stdout=out,
                                stderr=subprocess.STDOUT)
    balancer = Balancer(ports["8001"], ports["8000"], ports["8404"])
    try:
        wait_until(lambda: balancer.servers() and all(s == "UP" for s in balancer.servers().values()),
                   "haproxy: every replica UP", process=proc, log=log)
        yield balancer
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
