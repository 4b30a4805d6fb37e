"""Render docker-compose.yml as a stack file for `docker stack deploy` (Swarm).

Swarm reads the same services, `deploy:` sections and configs, but rejects the `profiles` key
and GPU `devices` reservations. This keeps the services of the chosen profiles, drops `profiles`
and `build` (Swarm pulls images: push them to a registry and set CONVNET_IMAGE), and turns a
GPU device reservation into the generic resource Swarm schedules on (`NVIDIA-GPU`).

    python3 deploy/stack.py --profile scale > stack.yml
    docker stack deploy -c stack.yml convnet
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

COMPOSE_FILE = Path(__file__).resolve().parent.parent / "docker-compose.yml"
SWARM_DROPPED_KEYS = ("profiles", "build")


def gpu_generic_resources(devices: list[dict]) -> list[dict]:
    """Swarm's form of a compose GPU reservation: one NVIDIA-GPU discrete resource per device."""
    resources = []
    for device in devices:
        if "gpu" not in device.get("capabilities", []):
            raise ValueError(f"deploy.resources.reservations.devices: expected a device with "
                             f"capabilities [gpu], got {device!r}")
        count = device.get("count", 1)
        if not isinstance(count, int):
            raise ValueError(f"deploy.resources.reservations.devices.count: expected an integer "
                             f"number of GPUs for Swarm, got {count!r}")
        resources.append({"discrete_resource_spec": {"kind": "NVIDIA-GPU", "value": count}})
    return resources


def swarm_service(service: dict) -> dict:
    """One compose service as Swarm accepts it."""
    out = {k: v for k, v in service.items() if k not in SWARM_DROPPED_KEYS}
    reservations = out.get("deploy", {}).get("resources", {}).get("reservations", {})
    if "devices" in reservations:
        reservations["generic_resources"] = gpu_generic_resources(reservations.pop("devices"))
    return out


def render(compose: dict, profiles: set[str], base: Path = COMPOSE_FILE.parent) -> dict:
    """The stack: services without a profile plus those of `profiles`, top-level x- keys dropped,
    config files made absolute (relative to `base`, the compose file's folder)."""
    compose = json.loads(json.dumps(compose))  # a private tree: YAML anchors become plain copies
    known = {p for s in compose["services"].values() for p in s.get("profiles", [])}
    unknown = profiles - known
    if unknown:
        raise ValueError(f"--profile: expected one of {sorted(known)}, got {sorted(unknown)}")
    stack = {k: v for k, v in compose.items() if not k.startswith("x-") and k != "services"}
    for config in stack.get("configs", {}).values():
        if "file" in config:
            config["file"] = str((base / config["file"]).resolve())
    stack["services"] = {
        name: swarm_service(service) for name, service in compose["services"].items()
        if not service.get("profiles") or profiles & set(service["profiles"])
    }
    return stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stack.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", type=Path, default=COMPOSE_FILE, help="compose file to read")
    parser.add_argument("--profile", action="append", default=[],
                        help="include the services of this profile (repeatable)")
    args = parser.parse_args(argv)
    compose = yaml.safe_load(args.file.read_text())
    try:
        stack = render(compose, set(args.profile), args.file.resolve().parent)
    except ValueError as err:
        print(f"stack.py: {err}", file=sys.stderr)
        return 2
    yaml.safe_dump(stack, sys.stdout, sort_keys=False, default_flow_style=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
