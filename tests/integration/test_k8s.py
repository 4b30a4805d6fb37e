"""deploy/k8s: every rendered manifest is valid Kubernetes (kubernetes-validate, strict, offline
schemas), and the pod spec agrees with the server it runs: ports, probes and drain timing are
read from the container's own flags through the server's configuration (service/config.py).

The kustomizations use only ``resources``, ``images`` and ``patches`` (JSON 6902); ``render``
implements that subset and refuses any other key, so what is checked is what kubectl would apply.
"""
from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from service.config import ServerConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = {"cpu": K8S, "gpu": K8S / "gpu"}
# The oldest version with everything used here (native gRPC probes, the preStop sleep action)
# that is still widely run, and the newest the installed kubernetes-validate knows.
K8S_VERSIONS = ("1.33", kubernetes_validate.utils.latest_version())
KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "images", "patches"}


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def apply_json6902(doc: dict, ops: list[dict]) -> dict:
    """Apply add/replace/remove operations (RFC 6902) to a copy of doc."""
    doc = copy.deepcopy(doc)
    for op in ops:
        *parents, last = _pointer(op["path"])
        node = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if op["op"] == "add" and isinstance(node, list):
            node.insert(len(node) if last == "-" else int(last), op["value"])
        elif op["op"] in ("add", "replace"):
            if op["op"] == "replace":
                assert (int(last) < len(node)) if isinstance(node, list) else last in node, op
            node[int(last) if isinstance(node, list) else last] = op["value"]
        elif op["op"] == "remove":
            del node[int(last) if isinstance(node, list) else last]
        else:
            raise AssertionError(f"unsupported patch op {op}")
    return doc


def _set_images(doc: dict, images: list[dict]) -> None:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        name = re.split(r"[:@]", container["image"])[0]
        for image in images:
            if image["name"] == name:
                container["image"] = f"{image.get('newName', name)}:{image['newTag']}" if "newTag" in image \
                    else image.get("newName", name)


def render(directory: Path) -> list[dict]:
    """The resources `kubectl apply -k directory` would send."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert set(kustomization) <= KUSTOMIZATION_KEYS, set(kustomization) - KUSTOMIZATION_KEYS
    assert kustomization["kind"] == "Kustomization"
    docs: list[dict] = []
    for resource in kustomization.get("resources", []):
        path = (directory / resource).resolve()
        docs += render(path) if path.is_dir() else [d for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        _set_images(doc, kustomization.get("images", []))
    for patch in kustomization.get("patches", []):
        target = patch["target"]
        matched = [i for i, d in enumerate(docs)
                   if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"]]
        assert matched, f"patch target {target} matches no resource"
        for i in matched:
            docs[i] = apply_json6902(docs[i], yaml.safe_load(patch["patch"]))
    return docs


def one(docs: list[dict], kind: str, name: str = "convnet-serve") -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def server_config(container: dict) -> ServerConfig:
    """The configuration the container's server runs with: its flags and environment merged by the
    server's own load_config (defaults < environment < flags)."""
    args, flags = list(container.get("args", [])), {}
    while args:
        flag = args.pop(0)
        assert flag.startswith("--") and args, f"expected --flag value pairs, got {flag!r}"
        flags[flag[2:].replace("-", "_")] = args.pop(0)
    environ = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    return load_config(None, flags, environ)


def drain_seconds(config: ServerConfig) -> float:
    """Seconds the server goes on serving after SIGTERM before it stops taking requests: the sum
    of any drain setting it has (0 while it has none)."""
    return sum(getattr(config, f.name) for f in dataclasses.fields(config)
               if "drain" in f.name and f.name.endswith("_s"))


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def rendered(request):
    return request.param, render(OVERLAYS[request.param])


def test_every_yaml_file_is_rendered():
    """A manifest no kustomization lists would be neither applied nor checked."""
    listed = set()
    for directory in OVERLAYS.values():
        k = yaml.safe_load((directory / "kustomization.yaml").read_text())
        listed |= {(directory / r).resolve() for r in k.get("resources", [])}
        listed.add((directory / "kustomization.yaml").resolve())
    files = {p.resolve() for p in K8S.rglob("*.yaml")}
    assert files - listed == set()


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_valid_in_strict_mode(rendered, version):
    _, docs = rendered
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"}
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_strict_validation_rejects_an_unknown_field():
    deployment = one(render(K8S), "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def test_ports_probes_and_scrape_annotations_agree_with_the_server(rendered):
    _, docs = rendered
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    config = server_config(container)
    assert config.host == "0.0.0.0", "the kubelet's probes and the Service reach the pod's IP"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    # Port name -> the server's setting (http: the REST port, where the server has one).
    fields = {"grpc": "port", "metrics": "metrics_port", "http": "http_port"}
    assert {"grpc", "metrics"} <= set(ports) <= {n for n, f in fields.items() if hasattr(config, f)}, ports
    assert all(number == getattr(config, fields[name]) for name, number in ports.items()), ports
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == config.port, probe
        assert container[probe]["grpc"].get("service", "") == "", "the whole server's grpc.health.v1 status"
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == config.metrics_port
    assert annotations["prometheus.io/path"] == "/metrics"
    for service in (d for d in docs if d["kind"] == "Service"):
        assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports and port["port"] == ports[port["targetPort"]], port


def test_drain_timing_agrees_with_the_server(rendered):
    """preStop, the server's drain and its grace fit in terminationGracePeriodSeconds, and liveness
    cannot restart a draining pod (its health is NOT_SERVING then)."""
    _, docs = rendered
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    config = server_config(container)
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop >= 1
    needed = pre_stop + drain_seconds(config) + config.shutdown_grace_s
    assert spec["terminationGracePeriodSeconds"] >= needed + 2, (spec["terminationGracePeriodSeconds"], needed)
    liveness = container["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > spec["terminationGracePeriodSeconds"]


def test_pod_runs_as_the_images_user_on_a_read_only_root(rendered):
    _, docs = rendered
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    dockerfile = (ROOT / "Dockerfile").read_text()
    user, group = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.M)[-1]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]) == (int(user), int(group))
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/tmp" in mounts
    for what in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][what])


def test_disruption_budget_and_autoscaler_target_the_deployment(rendered):
    _, docs = rendered
    deployment = one(docs, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert "replicas" not in deployment["spec"], "the autoscaler owns the count; apply would reset it"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_gpu_variant_asks_for_a_gpu_and_serves_with_cuda():
    container = one(render(OVERLAYS["gpu"]), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert server_config(container).providers == "cuda"
    assert container["image"].startswith("convnet-serve-gpu:")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    cpu = one(render(OVERLAYS["cpu"]), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert server_config(cpu).providers == "cpu" and "nvidia.com/gpu" not in cpu["resources"]["limits"]
