"""The deployment files validate with the real tools and agree with each other.

docker-compose (1.29, Debian) validates the compose file per profile, promtool the Prometheus
configuration, rules and rule unit tests, haproxy -c the load balancer configuration. A missing
tool fails these tests: scripts/install.sh installs them.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench import loopback
from service.config import ServerConfig

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"

# The service and deploy keys the Swarm compose-file (3.x) reference accepts, of those a compose
# file for this kind of service would use. `build` and `depends_on` are accepted and ignored.
SWARM_SERVICE_KEYS = {"image", "command", "entrypoint", "environment", "ports", "expose", "volumes",
                      "configs", "secrets", "healthcheck", "deploy", "depends_on", "networks",
                      "labels", "user", "stop_grace_period", "logging", "ulimits"}
SWARM_DEPLOY_KEYS = {"mode", "replicas", "endpoint_mode", "labels", "placement", "resources",
                     "restart_policy", "update_config", "rollback_config"}
SWARM_UPDATE_KEYS = {"parallelism", "delay", "failure_action", "monitor", "max_failure_ratio", "order"}
SWARM_RESTART_KEYS = {"condition", "delay", "max_attempts", "window"}
SWARM_LIMIT_KEYS = {"cpus", "memory"}
SWARM_RESERVATION_KEYS = {"cpus", "memory", "generic_resources"}
DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$")

PROFILE_SERVICES = {
    (): {"convnet", "prometheus", "grafana"},
    ("scale",): {"convnet", "prometheus", "grafana", "convnet-replica", "lb"},
    ("gpu",): {"convnet", "prometheus", "grafana", "convnet-gpu"},
}


def run(*command: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([loopback.binary(command[0]), *command[1:]], cwd=cwd,
                          capture_output=True, text=True, timeout=540)


def compose_config(profiles: tuple[str, ...], file: Path = COMPOSE) -> subprocess.CompletedProcess:
    flags = [arg for p in profiles for arg in ("--profile", p)]
    return run("docker-compose", "-f", str(file), *flags, "config", cwd=file.parent)


def compose_file() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.mark.parametrize("profiles", list(PROFILE_SERVICES), ids=lambda p: "+".join(p) or "default")
def test_compose_file_validates_per_profile(profiles):
    result = compose_config(profiles)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    # docker-compose 1.29 prints every service with its profiles; compose starts those without
    # a profile and those of an active one.
    active = {n for n, s in services.items() if not s.get("profiles") or set(s["profiles"]) & set(profiles)}
    assert active == PROFILE_SERVICES[profiles]


def test_compose_validation_rejects_a_broken_deploy_section(tmp_path):
    broken = compose_file()
    broken["services"]["convnet"]["deploy"]["replicas"] = "three"
    for config in broken["configs"].values():
        config["file"] = str(ROOT / config["file"])
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    result = compose_config((), path)
    assert result.returncode != 0
    assert "replicas" in result.stderr


def swarm_stack(*profiles: str) -> dict:
    flags = [arg for p in profiles for arg in ("--profile", p)]
    result = subprocess.run([sys.executable, str(DEPLOY / "stack.py"), *flags],
                            capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def swarm_problems(stack: dict) -> list[str]:
    """Keys and values `docker stack deploy` would reject, as readable strings."""
    problems = [f"top-level {k}" for k in stack if k not in {"version", "services", "configs",
                                                              "volumes", "networks", "secrets"}]
    for name, service in stack["services"].items():
        problems += [f"{name}.{k}" for k in set(service) - SWARM_SERVICE_KEYS]
        if "image" not in service:
            problems.append(f"{name}: no image")
        deploy = service.get("deploy", {})
        problems += [f"{name}.deploy.{k}" for k in set(deploy) - SWARM_DEPLOY_KEYS]
        if not isinstance(deploy.get("replicas", 1), int):
            problems.append(f"{name}.deploy.replicas not an integer")
        for key in ("update_config", "rollback_config"):
            problems += [f"{name}.deploy.{key}.{k}" for k in set(deploy.get(key, {})) - SWARM_UPDATE_KEYS]
        problems += [f"{name}.deploy.restart_policy.{k}"
                     for k in set(deploy.get("restart_policy", {})) - SWARM_RESTART_KEYS]
        resources = deploy.get("resources", {})
        problems += [f"{name}.deploy.resources.limits.{k}" for k in set(resources.get("limits", {})) - SWARM_LIMIT_KEYS]
        problems += [f"{name}.deploy.resources.reservations.{k}"
                     for k in set(resources.get("reservations", {})) - SWARM_RESERVATION_KEYS]
        for part in ("limits", "reservations"):
            for k in ("cpus", "memory"):
                value = resources.get(part, {}).get(k)
                if value is not None and not isinstance(value, str):
                    problems.append(f"{name}.deploy.resources.{part}.{k} must be a string")
        durations = [service.get("healthcheck", {}).get(k) for k in ("interval", "timeout", "start_period")]
        durations += [deploy.get(p, {}).get(k) for p in ("update_config", "restart_policy") for k in ("delay", "monitor", "window")]
        problems += [f"{name}: duration {d!r}" for d in durations if d is not None and not DURATION.match(str(d))]
    for name, config in stack.get("configs", {}).items():
        if not Path(config["file"]).is_file():
            problems.append(f"config {name}: {config['file']} missing")
    return problems


@pytest.mark.parametrize("profiles", list(PROFILE_SERVICES), ids=lambda p: "+".join(p) or "default")
def test_swarm_stack_render_keeps_profile_services_with_swarm_keys_only(profiles, tmp_path):
    stack = swarm_stack(*profiles)
    assert set(stack["services"]) == PROFILE_SERVICES[profiles]
    assert swarm_problems(stack) == []
    path = tmp_path / "stack.yml"
    path.write_text(yaml.safe_dump(stack))
    result = compose_config((), path)
    assert result.returncode == 0, result.stderr


def test_swarm_check_finds_what_swarm_rejects():
    stack = swarm_stack()
    stack["services"]["convnet"]["profiles"] = ["x"]
    stack["services"]["convnet"]["deploy"]["resources"]["limits"]["cpus"] = 2.0
    assert swarm_problems(stack) == ["convnet.profiles", "convnet.deploy.resources.limits.cpus must be a string"]


def test_swarm_stack_turns_the_gpu_reservation_into_a_generic_resource():
    reservations = swarm_stack("gpu")["services"]["convnet-gpu"]["deploy"]["resources"]["reservations"]
    compose_devices = compose_file()["services"]["convnet-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert compose_devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert reservations == {"generic_resources": [{"discrete_resource_spec": {"kind": "NVIDIA-GPU", "value": 1}}]}


def test_swarm_stack_rejects_an_unknown_profile():
    result = subprocess.run([sys.executable, str(DEPLOY / "stack.py"), "--profile", "gpus"],
                            capture_output=True, text=True, timeout=540)
    assert result.returncode == 2
    assert "--profile: expected one of ['gpu', 'scale'], got ['gpus']" in result.stderr


def test_promtool_checks_the_scrape_config_and_its_rules():
    result = run("promtool", "check", "config", str(DEPLOY / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout + result.stderr
    result = run("promtool", "check", "rules", str(DEPLOY / "prometheus" / "rules.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass():
    result = run("promtool", "test", "rules", "rules.test.yml", cwd=DEPLOY / "prometheus")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_can_fail(tmp_path):
    text = (DEPLOY / "prometheus" / "rules.test.yml").read_text()
    wrong = text.replace("value: 0.375", "value: 0.376")
    assert wrong != text
    (tmp_path / "rules.test.yml").write_text(wrong.replace("  - rules.yml", f"  - {DEPLOY / 'prometheus' / 'rules.yml'}"))
    result = run("promtool", "test", "rules", "rules.test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "3.76E-01" in result.stdout + result.stderr


def test_haproxy_accepts_the_load_balancer_config_as_shipped_and_rendered_for_loopback(tmp_path):
    shipped = run("haproxy", "-c", "-f", str(loopback.HAPROXY_CONFIG))
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    config = tmp_path / "haproxy.cfg"
    replicas = [loopback.Replica("127.0.0.1:1", "127.0.0.1:2"), loopback.Replica("127.0.0.1:3", "127.0.0.1:4")]
    config.write_text(loopback.haproxy_config(replicas, {"8001": "127.0.0.1:5", "8000": "127.0.0.1:6",
                                                         "8404": "127.0.0.1:7"}))
    rendered = run("haproxy", "-c", "-f", str(config))
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    text = config.read_text()
    assert "server replica1 127.0.0.1:1 proto h2 check-proto h1 port 2" in text
    assert "server replica2 127.0.0.1:4\n" in text and "convnet-replica:" not in text and "resolvers" not in text


def haproxy_setting(text: str, keyword: str) -> str:
    (line,) = re.findall(rf"^\s*{keyword}\b(.*)$", text, re.M)
    return line.strip()


def test_haproxy_checks_the_readiness_the_server_withdraws_at_the_start_of_its_drain():
    """The rolling restart loses nothing only if HAProxy stops sending to a replica before its
    drain ends: the readiness route (503 from the drain's start: test_load_balancer_rolling_restart.py)
    is checked, often enough, on the ports the server listens on."""
    text = loopback.HAPROXY_CONFIG.read_text()
    assert haproxy_setting(text, "option httpchk") == "GET /v2/health/ready"
    assert haproxy_setting(text, "http-check expect") == "status 200"
    server = haproxy_setting(text, "default-server").split()
    interval, fall = server[server.index("inter") + 1], int(server[server.index("fall") + 1])
    assert interval.endswith("s") and not interval.endswith("ms")
    assert "check" in server and float(interval[:-1]) * fall < ServerConfig().drain_s
    servers = re.findall(r"^\s*(?:server-template \S+ \d+|server \S+) convnet-replica:(\d+) (.*)$", text, re.M)
    ports = {int(port): options for port, options in servers}
    config = ServerConfig()
    assert set(ports) == {config.port, config.http_port}
    assert "proto h2" in ports[config.port] and f"port {config.http_port}" in ports[config.port]
    assert {options for port, options in servers if int(port) == config.port} == {ports[config.port]}


def design_metrics() -> set[str]:
    """Metric names in the table of docs/DESIGN.md's Metrics section."""
    text = (ROOT / "docs" / "DESIGN.md").read_text()
    section = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(convnet_\w+)` \|", section, re.M))


def test_dashboard_uses_only_design_metrics_and_the_provisioned_datasource():
    metrics = design_metrics()
    assert "convnet_request_duration_seconds" in metrics and len(metrics) >= 10
    queries = loopback.dashboard_queries({"__rate_interval": "1m", "model": ".*", "api": ".*"})
    used = {re.sub(r"_(bucket|sum|count|info)$", "", m) for q in queries for m in re.findall(r"convnet_\w+", q["expr"])}
    assert used <= metrics, used - metrics
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"][0]
    dashboard = json.loads(loopback.DASHBOARD.read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    uids |= {p["datasource"]["uid"] for p in dashboard["panels"]}
    assert uids == {datasource["uid"]}
    assert datasource["url"] == "http://prometheus:9090"


def test_dashboard_has_the_panels_the_issue_asks_for():
    titles = [p["title"] for p in json.loads(loopback.DASHBOARD.read_text())["panels"]]
    wanted = ["p50 / p95 / p99", "requests/s and images/s", "Batch size distribution", "Mean batch size",
              "Queue wait vs compute", "Queue depth", "by status code"]
    for words in wanted:
        assert any(words in t for t in titles), (words, titles)


def test_dashboard_variable_substitution_fails_on_an_unknown_variable():
    with pytest.raises(KeyError, match=r"\$api"):
        loopback.dashboard_queries({"__rate_interval": "1m", "model": ".*"})


def test_compose_mounts_match_the_paths_the_configs_expect():
    compose = compose_file()
    targets = {c["source"]: c["target"] for s in compose["services"].values() for c in s.get("configs", [])}
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    assert targets["prometheus-conf"] == "/etc/prometheus/prometheus.yml"
    assert targets["prometheus-rules"] == f"/etc/prometheus/{prometheus['rule_files'][0]}"
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/convnet.yml").read_text())["providers"][0]
    assert Path(targets["grafana-dashboard"]).parent == Path(provider["options"]["path"])
    assert targets["haproxy-cfg"] == "/usr/local/etc/haproxy/haproxy.cfg"  # the haproxy image's own path
    assert compose["configs"]["haproxy-cfg"]["file"] == "./deploy/haproxy/haproxy.cfg"
    names = prometheus["scrape_configs"][0]["dns_sd_configs"][0]["names"]
    assert set(names) == {n for n in compose["services"] if n.startswith("convnet")}
    assert compose["services"]["convnet-replica"]["deploy"]["endpoint_mode"] == "dnsrr"


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfile_copies_existing_paths_runs_as_non_root_and_probes_grpc_health(name):
    instructions = dockerfile_instructions(ROOT / name)
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for kind, args in instructions:
        if kind == "COPY" and not args.startswith("--from"):
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), f"{name}: COPY {source} does not exist"
                assert source.rstrip("/") not in ignored, f"{name}: COPY {source} is in .dockerignore"
    users = [args for kind, args in instructions if kind == "USER"]
    assert users and users[-1] not in ("root", "0")
    healthcheck = [args for kind, args in instructions if kind == "HEALTHCHECK"]
    assert len(healthcheck) == 1 and "deploy/healthcheck.py" in healthcheck[0]
    assert any(kind == "RUN" and "python -m protos.build" in args for kind, args in instructions)
    assert any(kind == "RUN" and "python -m training defaults --out /models" in args for kind, args in instructions)
    cmd = json.loads(next(args for kind, args in instructions if kind == "CMD"))
    assert cmd[:2] == ["--models", "/models"]
    if name == "Dockerfile.gpu":
        assert any(kind == "RUN" and "onnxruntime-gpu" in args for kind, args in instructions)
        assert cmd[-2:] == ["--providers", "cuda"]


def container_commands() -> list[list[str]]:
    """The server arguments of both images' CMD and of every compose service running the image."""
    commands = [json.loads(next(a for k, a in dockerfile_instructions(ROOT / name) if k == "CMD"))
                for name in ("Dockerfile", "Dockerfile.gpu")]
    commands += [s["command"] for s in compose_file()["services"].values() if "convnet" in s["image"]]
    return commands


def test_container_commands_use_flags_the_server_accepts():
    result = subprocess.run([sys.executable, "-m", "service", "serve", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, result.stderr
    commands = container_commands()
    assert len(commands) == 5
    for command in commands:
        for flag in (arg for arg in command if arg.startswith("--")):
            assert f"{flag} " in result.stdout, f"{flag} is not an option of python -m service serve"
        assert command[command.index("--host") + 1] == "0.0.0.0"  # reachable from other containers


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration))


def test_compose_stop_grace_covers_the_servers_drain_and_grace():
    """Docker sends SIGKILL after stop_grace_period: the server's drain and shutdown grace, read
    through its own configuration from the service's flags, must fit in it."""
    from service.config import load_config

    services = [s for s in compose_file()["services"].values() if "convnet" in s["image"]]
    assert len(services) == 3
    for service in services:
        args = list(service["command"])
        flags = {args[i][2:].replace("-", "_"): args[i + 1] for i in range(0, len(args), 2)}
        config = load_config(None, flags, {})
        drain = sum(getattr(config, f) for f in vars(config) if "drain" in f and f.endswith("_s"))
        assert _seconds(service["stop_grace_period"]) >= drain + config.shutdown_grace_s + 2, service


def healthcheck(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DEPLOY / "healthcheck.py"), *args],
                          capture_output=True, text=True, timeout=540)


def test_healthcheck_probe_passes_on_a_serving_server_and_fails_otherwise(server):
    ok = healthcheck("--target", server.target)
    assert ok.returncode == 0 and "SERVING" in ok.stdout, ok.stderr
    assert healthcheck("--target", server.target, "--service", "cifar-tiny").returncode == 0
    unknown = healthcheck("--target", server.target, "--service", "no-such-model")
    assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr
    closed = healthcheck("--target", f"127.0.0.1:{loopback.free_port()}", "--timeout", "1")
    assert closed.returncode == 1 and ("UNAVAILABLE" in closed.stderr or "DEADLINE_EXCEEDED" in closed.stderr)
