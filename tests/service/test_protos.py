"""The generated gRPC stubs are fresh, and the contracts keep the wire facts stock clients rely on."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_stubs_are_not_stale():
    result = subprocess.run([sys.executable, "-m", "protos.build", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, result.stderr


def test_kserve_field_numbers_match_the_published_protocol():
    """Field numbers compared with tritonclient's own copy of the protocol, in a fresh process
    (both copies register the same `inference.*` symbols, which one process cannot hold twice)."""
    script = r"""
import json, sys
from google.protobuf import descriptor_pool
def fields(module):
    out = {}
    for message in module.DESCRIPTOR.message_types_by_name.values():
        stack = [message]
        while stack:
            m = stack.pop()
            out[m.full_name] = {f.name: [f.number, f.type, f.label] for f in m.fields}
            stack.extend(m.nested_types)
    return out
if sys.argv[1] == "ours":
    from service.generated.inference import grpc_service_pb2 as module
else:
    from tritonclient.grpc import service_pb2 as module
print(json.dumps(fields(module)))
"""
    def load(which):
        result = subprocess.run([sys.executable, "-c", script, which], cwd=ROOT, capture_output=True,
                                text=True, timeout=540, check=True)
        return json.loads(result.stdout)

    ours, theirs = load("ours"), load("theirs")
    assert len(ours) >= 20
    for name, fields in ours.items():
        assert name in theirs, f"{name} is not a message of the published protocol"
        for field, spec in fields.items():
            if name == "inference.ModelMetadataResponse" and field not in theirs[name]:
                continue
            assert theirs[name].get(field) == spec, f"{name}.{field}: ours {spec}, published {theirs[name].get(field)}"


def test_statistics_and_repository_rpcs_match_the_published_protocol():
    """The extension RPCs carry the published request/response types, and their messages hold
    every published field (so tritonclient's get_inference_statistics and load_model parse them)."""
    script = r"""
import json, sys
if sys.argv[1] == "ours":
    from service.generated.inference import grpc_service_pb2 as module
else:
    from tritonclient.grpc import service_pb2 as module
rpcs = {m.name: [m.input_type.full_name, m.output_type.full_name]
        for m in module.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods}
def fields(m):
    return {f.name: [f.number, f.type] for f in m.fields}
names = ["ModelStatistics", "InferStatistics", "StatisticDuration", "InferBatchStatistics",
         "RepositoryIndexResponse", "RepositoryIndexRequest", "RepositoryModelLoadRequest"]
print(json.dumps({"rpcs": rpcs, "messages": {n: fields(module.DESCRIPTOR.message_types_by_name[n]) for n in names},
                  "index": fields(module.RepositoryIndexResponse.ModelIndex.DESCRIPTOR)}))
"""
    def load(which):
        result = subprocess.run([sys.executable, "-c", script, which], cwd=ROOT, capture_output=True,
                                text=True, timeout=60, check=True)
        return json.loads(result.stdout)

    ours, theirs = load("ours"), load("theirs")
    for rpc in ("ModelStatistics", "RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload"):
        assert ours["rpcs"][rpc] == theirs["rpcs"][rpc]
    assert ours["messages"] == theirs["messages"]
    assert ours["index"] == theirs["index"]
